//! The Security Services tab: settings (one device or in bulk), run now, the listing with
//! each scan's state, the latest results, and the search of the `security_scans` history.
//! Everything here needs the `control_devices` permission.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::queue::{self, RunNow, ScanKind};
use crate::auth::{Caller, CurrentUser, Permission};
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result};
use crate::startup::AppState;

/// Which devices a bulk action applies to: the selected ones, or all matching a filter
/// (the conditions given must all hold). With none given it selects nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// The selected devices (ids of other workgroups select nothing).
    pub device_ids: Option<Vec<Uuid>>,
    /// Or every device of this site…
    pub site_id: Option<Uuid>,
    /// …and/or whose name or serial contains this text.
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub query: Option<String>,
    /// Or every device of the workgroup.
    #[serde(default)]
    pub all_devices: bool,
    pub kinds: Vec<ScanKind>,
}

async fn select_devices(db: &PgPool, workgroup_id: Uuid, s: &Selection) -> Result<Vec<Uuid>> {
    if let Some(query) = &s.query {
        crate::http::Validator::default()
            .check(query.chars().count() <= 200, "query", "must be at most 200 characters")
            .check(!query.chars().any(char::is_control), "query", "must not contain control characters")
            .finish()?;
    }
    let filtered = s.site_id.is_some() || s.query.is_some();
    if s.device_ids.is_none() && !filtered && !s.all_devices {
        return Ok(vec![]);
    }
    let mut sql = QueryBuilder::new("SELECT id FROM devices WHERE workgroup_id = ");
    sql.push_bind(workgroup_id);
    if let Some(ids) = &s.device_ids {
        sql.push(" AND id = ANY(").push_bind(ids.clone()).push(")");
    }
    if let Some(site_id) = s.site_id {
        sql.push(" AND site_id = ").push_bind(site_id);
    }
    if let Some(query) = &s.query {
        let pattern = format!("%{}%", query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        sql.push(" AND (name ILIKE ").push_bind(pattern.clone()).push(" OR serial ILIKE ").push_bind(pattern).push(")");
    }
    sql.push(" ORDER BY id");
    Ok(sql.build_query_scalar().fetch_all(db).await?)
}

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

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// Device and kind pairs changed or enqueued.
    pub applied: u64,
    /// Run now: the scans refused because they were already scheduled or running.
    pub already_scheduled: Vec<DeviceScan>,
    /// Run now: the scans refused because they are not enabled.
    pub disabled: Vec<DeviceScan>,
}

/// One scan of one device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceScan {
    pub device_id: Uuid,
    pub kind: ScanKind,
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
        changed += sqlx::query(
            "INSERT INTO security_scan_settings (device_id, kind, workgroup_id, enabled)
             SELECT id, $3, workgroup_id, $4 FROM devices WHERE workgroup_id = $1 AND id = ANY($2)
             ON CONFLICT (device_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()",
        )
        .bind(workgroup_id)
        .bind(devices)
        .bind(kind)
        .bind(enabled)
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

/// Run a scan now: it joins the back of the queue. Refused while that scan is already
/// scheduled or running.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}/run", tag = "security",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path), ("kind" = ScanKind, Path)),
    security(("user_jwt" = [])),
    responses((status = 202, description = "Scan scheduled"),
        (status = 409, description = "Already scheduled or in progress (`scan-already-scheduled`), or not enabled (`scan-disabled`): a scan runs only while its owner has it enabled", body = crate::http::Problem, content_type = "application/problem+json")))]
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

/// What a scan found that the previous successful scan of the same device and kind did
/// not (`new_*`), and what it no longer found (`gone_*`); null for a device's first scan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScanChanges {
    pub previous_scan_id: Uuid,
    /// External: ports open now that were not before.
    pub new_ports: Vec<i32>,
    /// External: ports open before that are not now.
    pub gone_ports: Vec<i32>,
    /// Internal: hosts found now that were not before (address and MAC together).
    pub new_hosts: Vec<HostRef>,
    pub gone_hosts: Vec<HostRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostRef {
    pub ip: String,
    pub mac: Option<String>,
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

#[derive(sqlx::FromRow)]
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
    let devices: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "SELECT id, name, site_id FROM devices
         WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR site_id = $2) AND ($3::uuid IS NULL OR id = $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5",
    )
    .bind(workgroup_id)
    .bind(filter.site_id)
    .bind(filter.device_id)
    .bind(page.after::<Uuid>()?)
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    let ids: Vec<Uuid> = devices.iter().map(|d| d.0).collect();
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT d.id AS device_id, k.kind, coalesce(s.enabled, false) AS enabled,
                a.state AS active_state, a.progress, a.last_error AS active_error,
                CASE WHEN a.state = 'queued' THEN
                    CASE WHEN k.kind = 'internal' THEN 1 ELSE
                        (SELECT count(*) + 1 FROM security_scan_jobs q
                         WHERE q.state = 'queued' AND q.kind = 'external' AND q.queue_position < a.queue_position) END
                END AS queue_position,
                l.state AS last_state, l.last_error, l.finished_at AS last_finished_at,
                r.id AS scan_id, r.finished_at AS result_at, r.open_ports, r.ids_suspected, r.ids_reasons, r.hosts_found,
                r.changes
         FROM devices d
         CROSS JOIN (VALUES ('internal'), ('external')) AS k(kind)
         LEFT JOIN security_scan_settings s ON s.device_id = d.id AND s.kind = k.kind
         LEFT JOIN LATERAL (SELECT * FROM security_scan_jobs j WHERE j.device_id = d.id AND j.kind = k.kind
                            AND j.state IN ('queued', 'running') LIMIT 1) a ON true
         LEFT JOIN LATERAL (SELECT * FROM security_scan_jobs j WHERE j.device_id = d.id AND j.kind = k.kind
                            AND j.state IN ('succeeded', 'failed') ORDER BY j.finished_at DESC LIMIT 1) l ON true
         LEFT JOIN LATERAL (SELECT * FROM security_scans sc WHERE sc.workgroup_id = d.workgroup_id AND sc.device_id = d.id
                            AND sc.kind = k.kind AND sc.outcome = 'succeeded' ORDER BY sc.finished_at DESC LIMIT 1) r ON true
         WHERE d.workgroup_id = $1 AND d.id = ANY($2)",
    )
    .bind(workgroup_id)
    .bind(&ids)
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
        .map(|(device_id, device_name, site_id)| DeviceScans {
            device_id,
            device_name,
            site_id,
            internal: status(device_id, ScanKind::Internal),
            external: status(device_id, ScanKind::External),
        })
        .collect();
    Ok(Json(Page::from_rows(items, limit, |d| d.device_id)))
}

/// One finished attempt in the `security_scans` history.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SecurityScan {
    pub id: Uuid,
    pub device_id: Uuid,
    pub kind: ScanKind,
    pub attempt: i32,
    /// `succeeded`, `failed`, `lost` (its worker stopped reporting) or `withdrawn` (its
    /// owner disabled the scan while it ran).
    pub outcome: String,
    /// External: the address scanned.
    pub target: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub error: Option<String>,
    pub open_ports: Option<i32>,
    pub ids_suspected: Option<bool>,
    pub ids_reasons: Option<Vec<String>>,
    pub hosts_found: Option<i32>,
    /// Since the previous successful scan of the same device and kind; null for the
    /// first, and for attempts that did not succeed.
    #[schema(value_type = Option<ScanChanges>)]
    pub changes: Option<sqlx::types::Json<ScanChanges>>,
}

/// A finding: an open port (external) or a host (internal).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Finding {
    pub id: Uuid,
    pub scan_id: Uuid,
    pub device_id: Uuid,
    pub kind: ScanKind,
    pub seen_at: DateTime<Utc>,
    pub port: Option<i32>,
    pub protocol: Option<String>,
    pub state: Option<String>,
    pub service: Option<String>,
    pub banner: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub description: Option<String>,
}

const FINDING_COLUMNS: &str = "id, scan_id, device_id, kind, seen_at, port, protocol, state, service, banner, \
                               host(ip) AS ip, mac::text AS mac, description";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryFilter {
    pub device_id: Option<Uuid>,
    pub kind: Option<ScanKind>,
    /// Finished (scans) or seen (findings) at or after.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// This port (findings), or scans that found it open (history).
    #[param(minimum = 1, maximum = 65535)]
    pub port: Option<i32>,
    /// This host address (findings), or scans that found it (history); internal scans find
    /// IPv4 hosts.
    #[param(value_type = Option<String>, format = Ipv4)]
    pub ip: Option<std::net::IpAddr>,
    /// This MAC address, `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (findings), or scans
    /// that found it (history).
    #[param(pattern = r"^([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5})$")]
    pub mac: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HistoryCursor {
    t: DateTime<Utc>,
    id: Uuid,
}

fn push_history_filter(sql: &mut QueryBuilder<sqlx::Postgres>, workgroup_id: Uuid, f: &HistoryFilter, time: &str) {
    sql.push(" WHERE workgroup_id = ").push_bind(workgroup_id);
    if let Some(device_id) = f.device_id {
        sql.push(" AND device_id = ").push_bind(device_id);
    }
    if let Some(kind) = f.kind {
        sql.push(" AND kind = ").push_bind(kind);
    }
    if let Some(from) = f.from {
        sql.push(format_args!(" AND {time} >= ")).push_bind(from);
    }
    if let Some(to) = f.to {
        sql.push(format_args!(" AND {time} < ")).push_bind(to);
    }
}

/// The conditions on what was found: `port`, `ip`, `mac` of `security_scan_findings` (its
/// columns named with `prefix`).
fn push_finding_filter(sql: &mut QueryBuilder<sqlx::Postgres>, f: &HistoryFilter, prefix: &str) {
    if let Some(port) = f.port {
        sql.push(format_args!(" AND {prefix}port = ")).push_bind(port);
    }
    if let Some(ip) = f.ip {
        sql.push(format_args!(" AND {prefix}ip = ")).push_bind(ipnet::IpNet::from(ip));
    }
    if let Some(mac) = &f.mac {
        sql.push(format_args!(" AND {prefix}mac = ")).push_bind(mac.clone()).push("::macaddr");
    }
}

/// Search the `security_scans` history: finished attempts, newest first; with a port, IP or
/// MAC, the scans that found it.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/security-scans", tag = "security",
    params(("workgroup_id" = Uuid, Path), HistoryFilter),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<SecurityScan>)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<HistoryFilter>,
) -> Result<Json<Page<SecurityScan>>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let page = PageParams { limit: filter.limit, cursor: filter.cursor.clone() };
    let limit = page.limit()?;
    let mut sql = QueryBuilder::new(
        "SELECT id, device_id, kind, attempt, outcome, host(target) AS target, started_at, finished_at, error, open_ports,
                ids_suspected, ids_reasons, hosts_found, changes FROM security_scans",
    );
    push_history_filter(&mut sql, workgroup_id, &filter, "finished_at");
    // A port, address or MAC selects the scans that found it.
    if filter.port.is_some() || filter.ip.is_some() || filter.mac.is_some() {
        sql.push(" AND EXISTS (SELECT 1 FROM security_scan_findings f WHERE f.scan_id = security_scans.id");
        push_finding_filter(&mut sql, &filter, "f.");
        sql.push(")");
    }
    if let Some(c) = page.after::<HistoryCursor>()? {
        sql.push(" AND (finished_at, id) < (").push_bind(c.t).push(", ").push_bind(c.id).push(")");
    }
    sql.push(" ORDER BY finished_at DESC, id DESC LIMIT ").push_bind(limit + 1);
    let rows: Vec<SecurityScan> = sql.build_query_as().fetch_all(&state.db).await?;
    Ok(Json(Page::from_rows(rows, limit, |s| HistoryCursor { t: s.finished_at, id: s.id })))
}

/// Search what scans found — open ports and hosts — by device, kind, time, port, IP or MAC.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/security-scans/findings", tag = "security",
    params(("workgroup_id" = Uuid, Path), HistoryFilter),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<Finding>)))]
pub async fn findings(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<HistoryFilter>,
) -> Result<Json<Page<Finding>>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let page = PageParams { limit: filter.limit, cursor: filter.cursor.clone() };
    let limit = page.limit()?;
    let mut sql = QueryBuilder::new(format!("SELECT {FINDING_COLUMNS} FROM security_scan_findings"));
    push_history_filter(&mut sql, workgroup_id, &filter, "seen_at");
    push_finding_filter(&mut sql, &filter, "");
    if let Some(c) = page.after::<HistoryCursor>()? {
        sql.push(" AND (seen_at, id) < (").push_bind(c.t).push(", ").push_bind(c.id).push(")");
    }
    sql.push(" ORDER BY seen_at DESC, id DESC LIMIT ").push_bind(limit + 1);
    let rows: Vec<Finding> = sql.build_query_as().fetch_all(&state.db).await?;
    Ok(Json(Page::from_rows(rows, limit, |f| HistoryCursor { t: f.seen_at, id: f.id })))
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
    let scan: SecurityScan = sqlx::query_as(
        "SELECT id, device_id, kind, attempt, outcome, host(target) AS target, started_at, finished_at, error, open_ports,
                ids_suspected, ids_reasons, hosts_found, changes
         FROM security_scans WHERE workgroup_id = $1 AND device_id = $2 AND kind = $3 AND outcome = 'succeeded'
         ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(workgroup_id)
    .bind(device_id)
    .bind(kind)
    .fetch_one(&state.db)
    .await?;
    let findings: Vec<Finding> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FINDING_COLUMNS} FROM security_scan_findings WHERE workgroup_id = $1 AND scan_id = $2 ORDER BY port, ip"
    )))
    .bind(workgroup_id)
    .bind(scan.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(LatestDetails { scan, findings }))
}
