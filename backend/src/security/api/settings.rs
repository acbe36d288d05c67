//! Enabling and disabling scans, for one device or a selection. Disabling withdraws what
//! waits or runs of them, in the same transaction.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{BulkResult, Selection, select_devices};
use crate::auth::{CurrentUser, Permission};
use crate::http::{Error, Json, Path, Result};
use crate::security::queue::{self, ScanKind};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledChange {
    pub enabled: bool,
}

/// A [`Selection`] and whether to enable its scans.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkSettings {
    #[serde(flatten)]
    pub selection: Selection,
    pub enabled: bool,
}

/// One object: the selection's fields and `enabled`. (utoipa would document the flattened
/// selection as an `allOf` whose first part, closed to other fields, refuses `enabled`.)
impl utoipa::PartialSchema for BulkSettings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Object, Schema, Type};
        let RefOr::T(Schema::Object(mut object)) = <Selection as utoipa::PartialSchema>::schema() else {
            unreachable!("a selection is an object")
        };
        object.description = Some("A selection of devices and scan kinds, and whether to enable those scans.".into());
        object.properties.insert("enabled".into(), Object::with_type(Type::Boolean).into());
        object.required.push("enabled".into());
        RefOr::T(Schema::Object(object))
    }
}

impl utoipa::ToSchema for BulkSettings {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <Selection as utoipa::ToSchema>::schemas(schemas);
    }
}

async fn set_enabled(
    db: &PgPool,
    workgroup_id: Uuid,
    devices: &[Uuid],
    kinds: &[ScanKind],
    enabled: bool,
) -> Result<u64> {
    let mut changed = 0;
    let mut tx = db.begin().await?;
    for kind in kinds {
        changed += sqlx::query!(
            "INSERT INTO security_scan_settings (device_id, kind, workgroup_id, enabled)
             SELECT id, $3, workgroup_id, $4 FROM devices WHERE workgroup_id = $1 AND id = ANY($2)
             ON CONFLICT (device_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()",
            workgroup_id,
            devices,
            kind as _,
            enabled,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The owner said no: what waits or runs of it stops.
        if !enabled {
            queue::withdraw(&mut tx, workgroup_id, devices, *kind).await?;
        }
    }
    tx.commit().await?;
    Ok(changed)
}

/// Enable or disable the weekly scan of one kind for one device.
#[utoipa::path(put, path = "/api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}", tag = "security",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path), ("kind" = ScanKind, Path)),
    request_body = EnabledChange,
    security(("user_jwt" = [])),
    responses((status = 204, description = "Saved")))]
pub async fn set_setting(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, device_id, kind)): Path<(Uuid, Uuid, ScanKind)>,
    Json(change): Json<EnabledChange>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    if set_enabled(&state.db, workgroup_id, &[device_id], &[kind], change.enabled).await? == 0 {
        return Err(Error::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Enable or disable internal and/or external scans on many devices at once.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/security/settings", tag = "security",
    params(("workgroup_id" = Uuid, Path)),
    request_body = BulkSettings,
    security(("user_jwt" = [])),
    responses((status = 200, body = BulkResult)))]
pub async fn bulk_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(bulk): Json<BulkSettings>,
) -> Result<Json<BulkResult>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let devices = select_devices(&state.db, workgroup_id, &bulk.selection).await?;
    let applied = set_enabled(&state.db, workgroup_id, &devices, &bulk.selection.kinds, bulk.enabled).await?;
    Ok(Json(BulkResult { applied, already_scheduled: vec![], disabled: vec![] }))
}
