//! The Security Services table — every device with the state of its internal and external
//! scans and their latest results — and one scan's latest result in full.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::history::{Finding, ScanChanges, SecurityScan, query_findings, query_scans};
use crate::auth::{Caller, Permission};
use crate::http::{Json, Page, PageParams, Path, Query, Result};
use crate::security::queue::ScanKind;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    NotEnabled,
    /// Enabled; no scan has run yet.
    Enabled,
    /// "Scan scheduled": waiting in the queue.
    Scheduled,
    InProgress,
    /// The latest scan finished; see `latest`.
    Completed,
    /// "Scan failed": every attempt of the latest scan failed.
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KindStatus {
    pub enabled: bool,
    pub state: ScanState,
    /// While scheduled: 1 for the next scan to run.
    pub queue_position: Option<i64>,
    /// While in progress: 0–1.
    pub progress: Option<f32>,
    /// While scheduled again after a failure, or failed: why.
    pub last_error: Option<String>,
    /// The latest successful scan.
    pub latest: Option<LatestResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatestResult {
    pub scan_id: Uuid,
    pub finished_at: DateTime<Utc>,
    /// External: open ports found (shown in red).
    pub open_ports: Option<i32>,
    /// External: whether an intrusion detection system seems to distort the results.
    pub ids_suspected: Option<bool>,
    pub ids_reasons: Option<Vec<String>>,
    /// Internal: hosts found.
    pub hosts_found: Option<i32>,
    /// Since the scan before it; null for the first.
    pub changes: Option<ScanChanges>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceScans {
    pub device_id: Uuid,
    pub device_name: String,
    pub site_id: Uuid,
    pub internal: KindStatus,
    pub external: KindStatus,
}

struct StatusRow {
    device_id: Uuid,
    kind: ScanKind,
    enabled: bool,
    active_state: Option<String>,
    queue_position: Option<i64>,
    progress: Option<f32>,
    active_error: Option<String>,
    last_state: Option<String>,
    last_error: Option<String>,
    last_finished_at: Option<DateTime<Utc>>,
    scan_id: Option<Uuid>,
    result_at: Option<DateTime<Utc>>,
    open_ports: Option<i32>,
    ids_suspected: Option<bool>,
    ids_reasons: Option<Vec<String>>,
    hosts_found: Option<i32>,
    changes: Option<sqlx::types::Json<ScanChanges>>,
}

impl From<&StatusRow> for KindStatus {
    fn from(r: &StatusRow) -> Self {
        let latest = r.scan_id.zip(r.result_at).map(|(scan_id, finished_at)| LatestResult {
            scan_id,
            finished_at,
            open_ports: r.open_ports,
            ids_suspected: r.ids_suspected,
            ids_reasons: r.ids_reasons.clone(),
            hosts_found: r.hosts_found,
            changes: r.changes.as_ref().map(|c| c.0.clone()),
        });
        let failed_last = r.last_state.as_deref() == Some("failed")
            && r.last_finished_at.is_some_and(|f| latest.as_ref().is_none_or(|l| f > l.finished_at));
        let state = match r.active_state.as_deref() {
            Some("queued") => ScanState::Scheduled,
            Some(_) => ScanState::InProgress,
            None if failed_last => ScanState::Failed,
            None if latest.is_some() => ScanState::Completed,
            None if r.enabled => ScanState::Enabled,
            None => ScanState::NotEnabled,
        };
        KindStatus {
            enabled: r.enabled,
            state,
            queue_position: r.queue_position.filter(|_| state == ScanState::Scheduled),
            progress: r.progress.filter(|_| state == ScanState::InProgress),
            last_error: match state {
                ScanState::Failed => r.last_error.clone(),
                ScanState::Scheduled | ScanState::InProgress => r.active_error.clone(),
                _ => None,
            },
            latest,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    pub site_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// The Security Services table: every device with the state of its internal and external
/// scans and their latest results.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/security/devices", tag = "security",
    params(("workgroup_id" = Uuid, Path), DeviceFilter),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<DeviceScans>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<DeviceFilter>,
) -> Result<Json<Page<DeviceScans>>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let page = PageParams { limit: filter.limit, cursor: filter.cursor };
    let limit = page.limit()?;
    let devices = sqlx::query!(
        "SELECT id, name, site_id FROM devices
         WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR site_id = $2) AND ($3::uuid IS NULL OR id = $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5",
        workgroup_id,
        filter.site_id,
        filter.device_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    // Besides the device, its kind and `enabled` (coalesced), every column comes from an outer
    // join: absent until there is a row to join.
    let rows = sqlx::query_as!(
        StatusRow,
        r#"SELECT d.id AS device_id, k.kind AS "kind!: ScanKind", coalesce(s.enabled, false) AS "enabled!",
                a.state AS "active_state?", a.progress AS "progress?", a.last_error AS "active_error?",
                CASE WHEN a.state = 'queued' THEN
                    CASE WHEN k.kind = 'internal' THEN 1 ELSE
                        (SELECT count(*) + 1 FROM security_scan_jobs q
                         WHERE q.state = 'queued' AND q.kind = 'external' AND q.queue_position < a.queue_position) END
                END AS queue_position,
                l.state AS "last_state?", l.last_error AS "last_error?", l.finished_at AS "last_finished_at?",
                r.id AS "scan_id?", r.finished_at AS "result_at?", r.open_ports AS "open_ports?",
                r.ids_suspected AS "ids_suspected?", r.ids_reasons AS "ids_reasons?", r.hosts_found AS "hosts_found?",
                r.changes AS "changes?: sqlx::types::Json<ScanChanges>"
         FROM devices d
         CROSS JOIN (VALUES ('internal'), ('external')) AS k(kind)
         LEFT JOIN security_scan_settings s ON s.device_id = d.id AND s.kind = k.kind
         LEFT JOIN LATERAL (SELECT * FROM security_scan_jobs j WHERE j.device_id = d.id AND j.kind = k.kind
                            AND j.state IN ('queued', 'running') LIMIT 1) a ON true
         LEFT JOIN LATERAL (SELECT * FROM security_scan_jobs j WHERE j.device_id = d.id AND j.kind = k.kind
                            AND j.state IN ('succeeded', 'failed') ORDER BY j.finished_at DESC LIMIT 1) l ON true
         LEFT JOIN LATERAL (SELECT * FROM security_scans sc WHERE sc.workgroup_id = d.workgroup_id AND sc.device_id = d.id
                            AND sc.kind = k.kind AND sc.outcome = 'succeeded' ORDER BY sc.finished_at DESC LIMIT 1) r ON true
         WHERE d.workgroup_id = $1 AND d.id = ANY($2)"#,
        workgroup_id,
        &ids,
    )
    .fetch_all(&state.db)
    .await?;
    let status = |device_id: Uuid, kind: ScanKind| {
        rows.iter()
            .find(|r| r.device_id == device_id && r.kind == kind)
            .map(KindStatus::from)
            .expect("a row per device and kind")
    };
    let items = devices
        .into_iter()
        .map(|d| DeviceScans {
            device_id: d.id,
            device_name: d.name,
            site_id: d.site_id,
            internal: status(d.id, ScanKind::Internal),
            external: status(d.id, ScanKind::External),
        })
        .collect();
    Ok(Json(Page::from_rows(items, limit, |d| d.device_id)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatestDetails {
    pub scan: SecurityScan,
    /// Open ports (external) or hosts (internal).
    pub findings: Vec<Finding>,
}

/// The latest successful scan of a kind for a device, with everything it found.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}/latest", tag = "security",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path), ("kind" = ScanKind, Path)),
    security(("user_jwt" = [])),
    responses((status = 200, body = LatestDetails)))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path((workgroup_id, device_id, kind)): Path<(Uuid, Uuid, ScanKind)>,
) -> Result<Json<LatestDetails>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let scan: SecurityScan = query_scans!(
        "SELECT ",
        " FROM security_scans WHERE workgroup_id = $1 AND device_id = $2 AND kind = $3 AND outcome = 'succeeded'
         ORDER BY finished_at DESC LIMIT 1",
        workgroup_id,
        device_id,
        kind as _,
    )
    .fetch_one(&state.db)
    .await?;
    let findings: Vec<Finding> = query_findings!(
        "SELECT ",
        " FROM security_scan_findings WHERE workgroup_id = $1 AND scan_id = $2 ORDER BY port, ip",
        workgroup_id,
        scan.id,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(LatestDetails { scan, findings }))
}
