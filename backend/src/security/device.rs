//! The device side of internal scans: a scanner claims its own internal-scan job (long
//! poll), heartbeats while it scans its local network, and reports the hosts it found or
//! why it could not. A device can reach only its own jobs, and a superseded attempt's
//! writes are refused (409) like any other fenced worker's.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::queue::{self, Claimed, HostFinding, ScanKind, ScanResult};
use crate::auth::AuthenticatedDevice;
use crate::http::{Error, Json, Path, Query, Result};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClaimParams {
    /// Seconds to wait for a job before answering 204 (0–25, default 25: under the
    /// server's request timeout).
    #[param(minimum = 0, maximum = 25)]
    pub wait: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InternalScanJob {
    pub job_id: Uuid,
    /// Name it in every heartbeat and report.
    pub attempt: i32,
    /// Heartbeat well within this, or the attempt is given up on.
    pub lease_secs: u64,
}

/// Claim this device's next internal scan, waiting up to `wait` seconds for one.
#[utoipa::path(post, path = "/api/v1/agent/security-scans/claim", tag = "agent",
    params(ClaimParams),
    security(("device_credential" = [])),
    responses((status = 200, body = InternalScanJob), (status = 204, description = "Nothing to scan yet")))]
pub async fn claim(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Query(params): Query<ClaimParams>,
) -> Result<Response> {
    let _waiting = state.long_polls.enter(device.device_id)?;
    let wait = Duration::from_secs(crate::http::page::bounded("wait", params.wait, 25, 0..=25)?);
    let lease = Duration::from_secs(state.config.security.lease_secs);
    let deadline = tokio::time::Instant::now() + wait;
    let worker = format!("device:{}", device.device_id);
    loop {
        if let Some(job) = queue::claim(&state.db, ScanKind::Internal, Some(device.device_id), &worker, lease).await? {
            let body = InternalScanJob { job_id: job.id, attempt: job.attempt, lease_secs: lease.as_secs() };
            return Ok(Json(body).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - tokio::time::Instant::now())).await;
    }
}

/// The job as the device holds it, if it is the device's own.
async fn held(state: &AppState, device: &AuthenticatedDevice, job_id: Uuid, attempt: i32) -> Result<Claimed> {
    let started_at = sqlx::query_scalar!(
        r#"SELECT coalesce(started_at, enqueued_at) AS "started_at!" FROM security_scan_jobs
           WHERE id = $1 AND device_id = $2 AND kind = 'internal'"#,
        job_id,
        device.device_id,
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(Error::NotFound)?;
    Ok(Claimed {
        id: job_id,
        workgroup_id: device.workgroup_id,
        device_id: device.device_id,
        kind: ScanKind::Internal,
        attempt,
        started_at,
        target: None,
    })
}

fn superseded() -> Error {
    Error::conflict("scan-superseded", "this attempt was given up on; stop scanning and claim again")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The attempt the claim gave.
    #[schema(minimum = 1, maximum = 2147483647)]
    pub attempt: i32,
    /// 0–1.
    #[schema(minimum = 0, maximum = 1)]
    pub progress: f32,
}

/// Renew the lease of a running internal scan and report progress.
#[utoipa::path(post, path = "/api/v1/agent/security-scans/{job_id}/heartbeat", tag = "agent",
    params(("job_id" = Uuid, Path)),
    request_body = Heartbeat,
    security(("device_credential" = [])),
    responses((status = 204, description = "Lease renewed"),
        (status = 409, description = "The attempt was superseded")))]
pub async fn heartbeat(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Path(job_id): Path<Uuid>,
    Json(beat): Json<Heartbeat>,
) -> Result<StatusCode> {
    if !(0.0..=1.0).contains(&beat.progress) {
        return Err(Error::invalid_field("progress", "must be between 0 and 1"));
    }
    let job = held(&state, &device, job_id, beat.attempt).await?;
    let lease = Duration::from_secs(state.config.security.lease_secs);
    if queue::heartbeat(&state.db, &job, beat.progress, lease).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(superseded())
    }
}

/// The hosts found, or — when the scan could not be done — why: one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalScanReport {
    pub attempt: i32,
    pub hosts: Option<Vec<HostFinding>>,
    pub error: Option<String>,
}

/// Written out, because "`hosts` or `error`, not both" is beyond what the derive says.
impl utoipa::PartialSchema for InternalScanReport {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let schema = serde_json::json!({
            "type": "object",
            "description": "The hosts found, or — when the scan could not be done — why: one of the two.",
            "required": ["attempt"],
            "properties": {
                "attempt": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 2147483647,
                            "description": "The attempt the claim gave."},
                "hosts": {"type": ["array", "null"], "maxItems": MAX_HOSTS,
                          "items": {"$ref": "#/components/schemas/HostFinding"}},
                "error": {"type": ["string", "null"], "minLength": 1, "maxLength": 1000,
                          "pattern": myscanner_protocol::text::PRINTABLE_NOT_BLANK,
                          "description": "Why the scan could not be done."}
            },
            "oneOf": [
                {"required": ["hosts"], "properties": {"hosts": {"type": "array"}, "error": {"type": "null"}}},
                {"required": ["error"], "properties": {"error": {"type": "string"}, "hosts": {"type": "null"}}}
            ],
            "additionalProperties": false
        });
        serde_json::from_value(schema).expect("the report's schema is a schema")
    }
}

impl utoipa::ToSchema for InternalScanReport {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push(("HostFinding".into(), HostFinding::schema()));
    }
}

/// Hosts one report may name at most.
const MAX_HOSTS: usize = 4096;

/// Report the outcome of an internal scan: the hosts found, or why it failed.
#[utoipa::path(post, path = "/api/v1/agent/security-scans/{job_id}/report", tag = "agent",
    params(("job_id" = Uuid, Path)),
    request_body = InternalScanReport,
    security(("device_credential" = [])),
    responses((status = 204, description = "Recorded"),
        (status = 409, description = "The attempt was superseded")))]
pub async fn report(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Path(job_id): Path<Uuid>,
    Json(report): Json<InternalScanReport>,
) -> Result<StatusCode> {
    let mut errors = crate::http::Validator::default();
    match (&report.hosts, &report.error) {
        (Some(hosts), None) => {
            errors.check(hosts.len() <= MAX_HOSTS, "hosts", "at most 4096 hosts");
            for host in hosts {
                let mac_ok = host.mac.as_deref().is_none_or(valid_mac);
                errors.check(mac_ok, "hosts.mac", "must be a MAC address such as 00:1b:21:3a:4f:5e");
                let described = host
                    .description
                    .as_deref()
                    .is_none_or(|d| d.chars().count() <= 200 && !d.chars().any(char::is_control));
                errors.check(described, "hosts.description", "at most 200 characters, no control characters");
            }
        }
        (None, Some(error)) => {
            let readable = myscanner_protocol::text::printable_not_blank(error, 1000);
            errors.check(readable, "error", "1–1000 characters, not only spaces, no control characters");
        }
        _ => {
            errors.check(false, "hosts", "give either `hosts` or `error`");
        }
    }
    errors.finish()?;
    let job = held(&state, &device, job_id, report.attempt).await?;
    let recorded = match (report.hosts, report.error) {
        (Some(hosts), _) => queue::succeed(&state.db, &job, &ScanResult::Internal { hosts }).await?,
        (None, Some(error)) => {
            let backoff = Duration::from_secs(state.config.security.retry_backoff_secs);
            let error: String = error.chars().filter(|c| !c.is_control()).collect();
            queue::fail(&state.db, &job, &format!("on the device: {error}"), backoff).await?
        }
        (None, None) => unreachable!("validated"),
    };
    if recorded { Ok(StatusCode::NO_CONTENT) } else { Err(superseded()) }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}
