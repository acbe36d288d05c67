//! Running scans now, on one device or a selection: they join the back of the queue. A
//! cloud feature (`router::cloud_features`).

use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use super::{BulkResult, DeviceScan, Selection, select_devices};
use crate::auth::{CurrentUser, Permission};
use crate::http::{Error, Json, Path, Result};
use crate::security::queue::{self, RunNow, ScanKind};
use crate::state::AppState;

/// Run a scan now: it joins the back of the queue. Refused while that scan is already
/// scheduled or running.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}/run", tag = "security",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path), ("kind" = ScanKind, Path)),
    security(("user_jwt" = [])),
    responses((status = 202, description = "Scan scheduled"),
        (status = 409, description = "Already scheduled or in progress (`scan-already-scheduled`), or not enabled (`scan-disabled`): a scan runs only while its owner has it enabled")))]
pub async fn run_now(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, device_id, kind)): Path<(Uuid, Uuid, ScanKind)>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    crate::devices::fetch(&state.db, workgroup_id, device_id).await?;
    match queue::run_now(&state.db, workgroup_id, device_id, kind).await? {
        RunNow::Queued => Ok(StatusCode::ACCEPTED),
        RunNow::AlreadyScheduled => {
            Err(Error::conflict("scan-already-scheduled", "this scan is already scheduled or in progress"))
        }
        RunNow::Disabled => Err(Error::conflict("scan-disabled", "this scan is not enabled: enable it to run it")),
    }
}

/// Run scans now on many devices; those already scheduled or running are listed, not doubled.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/security/run", tag = "security",
    params(("workgroup_id" = Uuid, Path)),
    request_body = Selection,
    security(("user_jwt" = [])),
    responses((status = 200, body = BulkResult)))]
pub async fn bulk_run(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(selection): Json<Selection>,
) -> Result<Json<BulkResult>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let devices = select_devices(&state.db, workgroup_id, &selection).await?;
    let mut result = BulkResult { applied: 0, already_scheduled: vec![], disabled: vec![] };
    for device_id in devices {
        for kind in &selection.kinds {
            let scan = DeviceScan { device_id, kind: *kind };
            match queue::run_now(&state.db, workgroup_id, device_id, *kind).await? {
                RunNow::Queued => result.applied += 1,
                RunNow::AlreadyScheduled => result.already_scheduled.push(scan),
                RunNow::Disabled => result.disabled.push(scan),
            }
        }
    }
    Ok(Json(result))
}
