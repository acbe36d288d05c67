//! The scanner-facing side: a device learns who it is and reports its settings. Everything
//! here authenticates with the device credential and acts only on the device itself.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Device, DeviceKind, DeviceSettings, query_devices};
use crate::auth::AuthenticatedDevice;
use crate::http::{Json, Result, Validator};
use crate::state::AppState;
use crate::subscriptions::SubscriptionStatus;

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentIdentity {
    pub device_id: Uuid,
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub kind: DeviceKind,
    pub serial: String,
    pub name: String,
    /// The site's IANA time zone.
    pub site_time_zone: String,
    pub settings: DeviceSettings,
    /// Where and as whom the device publishes its measurements; its AMQP password is its
    /// device credential.
    pub broker: BrokerAccess,
    /// Whether its cloud features work now, for the scanner to show.
    pub cloud_features: CloudFeatures,
}

/// The scanner's cloud features (remote control, sync) follow its workgroup's subscription.
/// Measurements are accepted whatever the subscription: they are stored, and readable once
/// it is renewed.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CloudFeatures {
    pub available: bool,
    pub subscription_status: SubscriptionStatus,
    /// What the scanner can tell its operator.
    #[schema(example = "MyScanner cloud features are available")]
    pub message: String,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BrokerAccess {
    #[schema(example = "amqps://mq.myscanner.example:5671/%2f")]
    pub url: String,
    pub username: String,
    #[schema(example = "measurements")]
    pub exchange: String,
    #[schema(example = "device.0190b3c4-6c2e-7d3a-9a55-0c8f2e1d3b4a")]
    pub routing_key: String,
}

/// Who the calling device is, as the cloud knows it, where it publishes measurements, and
/// whether its cloud features work (its workgroup's subscription).
#[utoipa::path(get, path = "/api/v1/agent/me", tag = "agent",
    security(("device_credential" = [])),
    responses((status = 200, body = AgentIdentity)))]
pub async fn me(State(state): State<AppState>, device: AuthenticatedDevice) -> Result<Json<AgentIdentity>> {
    let d = sqlx::query!(
        r#"SELECT d.workgroup_id, d.site_id, d.kind AS "kind: DeviceKind", d.serial, d.name, s.time_zone,
                  d.measurement_transfer, d.allow_remote_control, d.reference_scan_sync, d.load_list_sync
           FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.id = $1"#,
        device.device_id,
    )
    .fetch_one(&state.db)
    .await?;
    let broker = BrokerAccess {
        url: state.config.broker.device_url.clone(),
        username: state.broker.device_user(device.device_id),
        exchange: myscanner_protocol::MEASUREMENTS_EXCHANGE.to_owned(),
        routing_key: myscanner_protocol::routing_key(device.device_id),
    };
    let status = device.subscription;
    let message = if status.available() {
        "MyScanner cloud features are available".to_owned()
    } else {
        let contact = &state.config.subscriptions.contact;
        let why = status.why_inactive();
        format!("MyScanner cloud features are paused: {why}; measurements are still stored; contact {contact}")
    };
    let cloud_features = CloudFeatures { available: status.available(), subscription_status: status, message };
    let settings = DeviceSettings {
        measurement_transfer: d.measurement_transfer,
        allow_remote_control: d.allow_remote_control,
        reference_scan_sync: d.reference_scan_sync,
        load_list_sync: d.load_list_sync,
    };
    Ok(Json(AgentIdentity {
        device_id: device.device_id,
        workgroup_id: d.workgroup_id,
        site_id: d.site_id,
        kind: d.kind,
        serial: d.serial,
        name: d.name,
        site_time_zone: d.time_zone,
        settings,
        broker,
        cloud_features,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsReport {
    pub measurement_transfer: bool,
    pub allow_remote_control: bool,
    pub reference_scan_sync: bool,
    pub load_list_sync: bool,
    /// Printable ASCII without spaces.
    #[schema(example = "1.4.2", min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub agent_version: String,
}

/// Report the device's settings and agent version. The scanner is authoritative over its
/// own features; the cloud honours what it reports from now on.
#[utoipa::path(put, path = "/api/v1/agent/settings", tag = "agent",
    request_body = SettingsReport,
    security(("device_credential" = [])),
    responses((status = 200, body = Device)))]
pub async fn report_settings(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Json(report): Json<SettingsReport>,
) -> Result<Json<Device>> {
    let version = report.agent_version.as_str();
    Validator::default()
        .check(
            (1..=64).contains(&version.len()) && version.chars().all(|c| c.is_ascii_graphic()),
            "agent_version",
            "1–64 printable characters",
        )
        .finish()?;
    let s = &report;
    let device: Device = query_devices!(
        "UPDATE devices SET measurement_transfer = $2, allow_remote_control = $3, reference_scan_sync = $4,
                load_list_sync = $5, agent_version = $6, settings_reported_at = now()
         WHERE id = $1 RETURNING ",
        "",
        device.device_id,
        s.measurement_transfer,
        s.allow_remote_control,
        s.reference_scan_sync,
        s.load_list_sync,
        version,
    )
    .fetch_one(&state.db)
    .await?
    .into();
    if !device.settings.allow_remote_control {
        // Refused from now on (the flag above); what runs ends at once, on every replica.
        state.remote.remote_control_disabled(device.id).await?;
    }
    Ok(Json(device))
}
