//! Devices (LVS and MPS scanners): what a device is, and
//! - `api`: provisioning by platform operators and the workgroup's view of its scanners;
//! - `credentials`: issuing, rotating and revoking device credentials;
//! - `device`: the endpoints the scanners themselves call.

pub mod api;
pub mod credentials;
pub mod device;

pub use api::valid_serial;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DeviceKind {
    /// Load Volume Scanner.
    Lvs,
    /// Mine Payload Scanner.
    Mps,
}

/// The scanner's MyScanner features as it last reported them. The scanner is
/// authoritative: the cloud honours these (no remote session while remote control is off,
/// no sync while sync is off). All off until the device first reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct DeviceSettings {
    pub measurement_transfer: bool,
    pub allow_remote_control: bool,
    pub reference_scan_sync: bool,
    pub load_list_sync: bool,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Device {
    pub id: Uuid,
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub kind: DeviceKind,
    #[schema(example = "LVS-2024-0042")]
    pub serial: String,
    #[schema(example = "Weighbridge 2")]
    pub name: String,
    #[sqlx(flatten)]
    pub settings: DeviceSettings,
    /// When the device last reported its settings; absent until it has.
    pub settings_reported_at: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The address the device's connections were last seen from (its site's public address).
    #[schema(value_type = Option<String>, example = "203.0.113.10")]
    pub public_address: Option<IpAddr>,
    pub created_at: DateTime<Utc>,
}

/// The columns of [`Device`], for `concat!`-built (hence static, injection-free) SQL.
macro_rules! device_columns {
    () => {
        "id, workgroup_id, site_id, kind, serial, name, measurement_transfer, allow_remote_control, \
         reference_scan_sync, load_list_sync, settings_reported_at, agent_version, last_seen_at, public_address, created_at"
    };
}
pub(crate) use device_columns;

pub async fn fetch(db: &PgPool, workgroup_id: Uuid, device_id: Uuid) -> Result<Device> {
    Ok(sqlx::query_as::<_, Device>(concat!(
        "SELECT ",
        device_columns!(),
        " FROM devices WHERE workgroup_id = $1 AND id = $2"
    ))
    .bind(workgroup_id)
    .bind(device_id)
    .fetch_one(db)
    .await?)
}
