//! The Security Services tab: settings (one device or in bulk), run now, the listing with
//! each scan's state, the latest results, and the search of the `security_scans` history.
//! Everything here needs the `control_devices` permission.
//!
//! A file per concern: `settings` (enable, disable), `run` (run now), `status` (the table
//! and a scan's latest result), `history` (the search). What bulk actions share — the
//! [`Selection`] of devices and the [`BulkResult`] — is here.

pub mod history;
pub mod run;
pub mod settings;
pub mod status;

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::queue::ScanKind;
use crate::http::Result;

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

/// The workgroup's devices `s` selects, in id order (its text checked as its schema says).
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
