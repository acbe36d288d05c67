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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceSettings {
    pub measurement_transfer: bool,
    pub allow_remote_control: bool,
    pub reference_scan_sync: bool,
    pub load_list_sync: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub kind: DeviceKind,
    #[schema(example = "LVS-2024-0042")]
    pub serial: String,
    #[schema(example = "Weighbridge 2")]
    pub name: String,
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

/// [`Device`] as its row reads, the settings beside the rest (`query_as!` cannot nest them).
pub(crate) struct DeviceRow {
    id: Uuid,
    workgroup_id: Uuid,
    site_id: Uuid,
    kind: DeviceKind,
    serial: String,
    name: String,
    measurement_transfer: bool,
    allow_remote_control: bool,
    reference_scan_sync: bool,
    load_list_sync: bool,
    settings_reported_at: Option<DateTime<Utc>>,
    agent_version: Option<String>,
    last_seen_at: Option<DateTime<Utc>>,
    public_address: Option<IpAddr>,
    created_at: DateTime<Utc>,
}

impl From<DeviceRow> for Device {
    fn from(r: DeviceRow) -> Device {
        let settings = DeviceSettings {
            measurement_transfer: r.measurement_transfer,
            allow_remote_control: r.allow_remote_control,
            reference_scan_sync: r.reference_scan_sync,
            load_list_sync: r.load_list_sync,
        };
        Device {
            id: r.id,
            workgroup_id: r.workgroup_id,
            site_id: r.site_id,
            kind: r.kind,
            serial: r.serial,
            name: r.name,
            settings,
            settings_reported_at: r.settings_reported_at,
            agent_version: r.agent_version,
            last_seen_at: r.last_seen_at,
            public_address: r.public_address,
            created_at: r.created_at,
        }
    }
}

/// A checked statement reading [`DeviceRow`]s: `query_devices!(before, after, args…)` is
/// `before` + the columns + `after` (`"SELECT "`/`" FROM devices …"`, or `"UPDATE … RETURNING "`/`""`).
macro_rules! query_devices {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::devices::DeviceRow,
            $before
                + r#"id, workgroup_id, site_id, kind AS "kind: crate::devices::DeviceKind", serial, name,
                     measurement_transfer, allow_remote_control, reference_scan_sync, load_list_sync,
                     settings_reported_at, agent_version, last_seen_at,
                     public_address AS "public_address: std::net::IpAddr", created_at"#
                + $after
            $(, $arg)*
        )
    };
}
pub(crate) use query_devices;

pub async fn fetch(db: &PgPool, workgroup_id: Uuid, device_id: Uuid) -> Result<Device> {
    let row = query_devices!("SELECT ", " FROM devices WHERE workgroup_id = $1 AND id = $2", workgroup_id, device_id)
        .fetch_one(db)
        .await?;
    Ok(row.into())
}
