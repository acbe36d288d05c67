//! The workgroup's scanners as people see and manage them: listing, provisioning (platform
//! operators), renaming and moving.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Device, DeviceKind, credentials, fetch, query_devices};
use crate::auth::{Caller, CurrentUser, Permission};
use crate::http::fields::Name;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result, ResultExt, Validator};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Only the devices of this site.
    pub site_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// List the workgroup's devices.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/devices", tag = "devices",
    params(("workgroup_id" = Uuid, Path), DeviceFilter),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Page<Device>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<DeviceFilter>,
) -> Result<Json<Page<Device>>> {
    caller.access(&state.db, workgroup_id).await?;
    let page = PageParams { limit: filter.limit, cursor: filter.cursor };
    let limit = page.limit()?;
    let rows = query_devices!(
        "SELECT ",
        " FROM devices
         WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR site_id = $2) AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        workgroup_id,
        filter.site_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let rows: Vec<Device> = rows.into_iter().map(Device::from).collect();
    Ok(Json(Page::from_rows(rows, limit, |d| d.id)))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/devices/{device_id}", tag = "devices",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path)),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Device)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((workgroup_id, device_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Device>> {
    caller.access(&state.db, workgroup_id).await?;
    Ok(Json(fetch(&state.db, workgroup_id, device_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub site_id: Uuid,
    pub kind: DeviceKind,
    /// The scanner's serial number, unique across the platform.
    #[schema(example = "LVS-2024-0042", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub serial: String,
    pub name: Name,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionedDevice {
    pub device: Device,
    pub credential: credentials::IssuedCredential,
}

pub fn valid_serial(serial: &str) -> bool {
    (1..=64).contains(&serial.len()) && serial.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn site_not_in_workgroup() -> Error {
    Error::invalid_field("site_id", "no such site in this workgroup")
}

/// Provision a scanner into a site of the workgroup (platform operators), within the scanners
/// its subscription covers (devices holding a live credential count). The response
/// holds the device credential, once: install it on the scanner.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/devices", tag = "devices",
    params(("workgroup_id" = Uuid, Path)),
    request_body = NewDevice,
    security(("user_jwt" = [])),
    responses((status = 201, body = ProvisionedDevice),
        (status = 402, description = "The workgroup's subscription covers no more scanners \
            (`scanner-limit-reached`)"),
        (status = 409, description = "The serial is already provisioned")))]
pub async fn provision(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(new): Json<NewDevice>,
) -> Result<(StatusCode, Json<ProvisionedDevice>)> {
    user.access(&state.db, workgroup_id).await?;
    if !user.is_operator {
        return Err(Error::Forbidden("platform_operator"));
    }
    Validator::default()
        .check(valid_serial(&new.serial), "serial", "1–64 letters, digits, '-', '_' or '.'")
        .name("name", &new.name)
        .finish()?;
    let mut tx = state.db.begin().await?;
    credentials::within_covered_scanners(&mut tx, workgroup_id).await?;
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO devices (id, workgroup_id, site_id, kind, serial, name) VALUES ($1, $2, $3, $4, $5, $6)",
        id,
        workgroup_id,
        new.site_id,
        new.kind as DeviceKind,
        &new.serial,
        new.name.trim(),
    )
    .execute(&mut *tx)
    .await
    .on_constraint("devices_serial_key", || Error::conflict("serial-taken", "a device with this serial exists"))
    .on_constraint("devices_site_fkey", site_not_in_workgroup)?;
    let credential = credentials::issue(&mut tx, &state.broker, workgroup_id, id).await?;
    tx.commit().await?;
    tracing::info!(device.id = %id, workgroup.id = %workgroup_id, "device provisioned");
    let device = fetch(&state.db, workgroup_id, id).await?;
    Ok((StatusCode::CREATED, Json(ProvisionedDevice { device, credential })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceChanges {
    pub name: Option<Name>,
    /// Moves the device to another site of the same workgroup.
    pub site_id: Option<Uuid>,
}

/// Rename a device or move it to another site.
#[utoipa::path(patch, path = "/api/v1/workgroups/{workgroup_id}/devices/{device_id}", tag = "devices",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path)),
    request_body = DeviceChanges,
    security(("user_jwt" = [])),
    responses((status = 200, body = Device)))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, device_id)): Path<(Uuid, Uuid)>,
    Json(changes): Json<DeviceChanges>,
) -> Result<Json<Device>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    if let Some(name) = &changes.name {
        Validator::default().name("name", name).finish()?;
    }
    let device = query_devices!(
        "UPDATE devices SET name = coalesce($3, name), site_id = coalesce($4, site_id)
         WHERE workgroup_id = $1 AND id = $2 RETURNING ",
        "",
        workgroup_id,
        device_id,
        changes.name.as_deref().map(str::trim),
        changes.site_id,
    )
    .fetch_one(&state.db)
    .await
    .on_constraint("devices_site_fkey", site_not_in_workgroup)?;
    Ok(Json(device.into()))
}
