//! Summaries for the dashboard: counts and totals over a time range, grouped by day (in
//! each site's own time zone), device, site or the values of one load detail list.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::filter::MeasurementFilter;
use crate::auth::{Caller, Permission};
use crate::http::{Error, FieldError, Json, Path, Query, Result};
use crate::startup::AppState;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Calendar days in each measurement's site time zone (`2026-11-21`).
    Day,
    Device,
    Site,
    /// The codes chosen from the load detail list named by `list`.
    LoadDetail,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    pub group_by: GroupBy,
    /// With `group_by=load_detail`: which list, e.g. `material`.
    pub list: Option<String>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SummaryGroup {
    /// The day (`YYYY-MM-DD`), device id, site id or load detail code; `null` for
    /// measurements without a value in that list.
    #[schema(example = "2026-11-21")]
    pub key: Option<String>,
    pub measurements: i64,
    pub volume_m3: f64,
    /// Sum over the MPS measurements in the group.
    pub payload_t: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub group_by: GroupBy,
    pub groups: Vec<SummaryGroup>,
}

/// The longest range one summary covers.
const MAX_DAYS: i64 = 400;

/// Counts and volume totals over a time range (`from` and `to` are required).
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/measurements/summary", tag = "measurements",
    params(("workgroup_id" = Uuid, Path), MeasurementFilter, SummaryParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Summary)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<MeasurementFilter>,
    Query(params): Query<SummaryParams>,
) -> Result<Json<Summary>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ViewData)?;
    let mut errors = vec![];
    match (filter.from, filter.to) {
        (Some(from), Some(to)) if to - from > chrono::Duration::days(MAX_DAYS) => {
            errors.push(FieldError::new("to", format!("a summary covers at most {MAX_DAYS} days")))
        }
        (Some(_), Some(_)) => {}
        _ => errors.push(FieldError::new("from", "`from` and `to` are required")),
    }
    let list = match (params.group_by, params.list.as_deref()) {
        (GroupBy::LoadDetail, Some(list)) if !list.is_empty() => Some(list.to_owned()),
        (GroupBy::LoadDetail, _) => {
            errors.push(FieldError::new("list", "required with group_by=load_detail"));
            None
        }
        _ => None,
    };
    if !errors.is_empty() {
        return Err(Error::InvalidRequest { detail: "invalid summary request".into(), errors });
    }
    let conditions = filter.conditions(workgroup_id)?;
    let key = match params.group_by {
        GroupBy::Day => "to_char(m.scanned_at AT TIME ZONE s.time_zone, 'YYYY-MM-DD')",
        GroupBy::Device => "m.device_id::text",
        GroupBy::Site => "m.site_id::text",
        GroupBy::LoadDetail => "d.value->>'code'",
    };
    let mut sql = QueryBuilder::new(format!(
        "SELECT {key} AS key, count(*) AS measurements, coalesce(sum(m.volume_m3), 0) AS volume_m3,
                sum(m.payload_t) AS payload_t
         FROM (SELECT * FROM measurements"
    ));
    conditions.push_where(&mut sql);
    sql.push(") m JOIN sites s ON s.id = m.site_id");
    if let Some(list) = &list {
        // One row per measurement: its value in that list, or none.
        sql.push(
            " LEFT JOIN LATERAL (SELECT e AS value FROM jsonb_array_elements(m.load_details) e WHERE e->>'list' = ",
        );
        sql.push_bind(list).push(" LIMIT 1) d ON true");
    }
    sql.push(" GROUP BY 1 ORDER BY 1");
    let groups: Vec<SummaryGroup> = sql.build_query_as().fetch_all(&state.db).await?;
    Ok(Json(Summary { group_by: params.group_by, groups }))
}
