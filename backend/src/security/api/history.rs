//! The search of the `security_scans` history: finished attempts, and what they found.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, Permission};
use crate::http::{Json, Page, PageParams, Path, Query, Result};
use crate::security::queue::ScanKind;
use crate::state::AppState;

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

// Each row type's columns are written twice, side by side: plain for the search's built
// statements, and with their Rust types for the checked ones. One list cannot serve both:
// `query_as!` takes only string literals (no constant, no nested macro), and the type
// annotations would rename the columns `FromRow` decodes by name. Keep each pair alike.

/// The columns of [`SecurityScan`], for built statements.
const SCAN_COLUMNS: &str = "id, device_id, kind, attempt, outcome, host(target) AS target, started_at, finished_at, \
     error, open_ports, ids_suspected, ids_reasons, hosts_found, changes";

/// A checked statement reading [`SecurityScan`]s: `query_scans!(before, after, args…)` is
/// `before` + the columns of [`SCAN_COLUMNS`] + `after`. `changes` takes its type from the
/// field (`_`): spelled out, it would not fit a column name (63 bytes).
macro_rules! query_scans {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::security::api::history::SecurityScan,
            $before
                + r#"id, device_id, kind AS "kind: crate::security::queue::ScanKind", attempt, outcome,
                     host(target) AS target, started_at, finished_at, error, open_ports, ids_suspected, ids_reasons,
                     hosts_found, changes AS "changes: _""#
                + $after
            $(, $arg)*
        )
    };
}
pub(super) use query_scans;

/// The columns of [`Finding`], for built statements.
const FINDING_COLUMNS: &str = "id, scan_id, device_id, kind, seen_at, port, protocol, state, service, banner, \
     host(ip) AS ip, mac::text AS mac, description";

/// A checked statement reading [`Finding`]s: `query_findings!(before, after, args…)` is
/// `before` + the columns of [`FINDING_COLUMNS`] + `after`.
macro_rules! query_findings {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::security::api::history::Finding,
            $before
                + r#"id, scan_id, device_id, kind AS "kind: crate::security::queue::ScanKind", seen_at, port, protocol,
                     state, service, banner, host(ip) AS ip, mac::text AS mac, description"#
                + $after
            $(, $arg)*
        )
    };
}
pub(super) use query_findings;

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
    let mut sql = QueryBuilder::new(format!("SELECT {SCAN_COLUMNS} FROM security_scans"));
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
