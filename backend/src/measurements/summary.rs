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
use crate::state::AppState;

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
    /// With `group_by=load_detail`: which list, e.g. `material` (the groups are its codes).
    /// Without it, every list's codes, as `list:code`; a measurement then counts in the group
    /// of each of its load details.
    #[param(min_length = 1, max_length = 200)]
    pub list: Option<String>,
}

/// The measurement filter of a summary, whose `from` and `to` are required.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct SummaryFilter(pub MeasurementFilter);

impl IntoParams for SummaryFilter {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = MeasurementFilter::into_params(parameter_in);
        for param in params.iter_mut().filter(|p| p.name == "from" || p.name == "to") {
            param.required = utoipa::openapi::Required::True;
            let range = format!(" Required; `to` at most {MAX_DAYS} days after `from`.");
            param.description = Some(param.description.take().unwrap_or_default() + &range);
        }
        params
    }
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

/// Counts and volume totals over a time range (`from` and `to` are required, at most
/// 400 days apart).
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/measurements/summary", tag = "measurements",
    params(("workgroup_id" = Uuid, Path), SummaryFilter, SummaryParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Summary)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(SummaryFilter(filter)): Query<SummaryFilter>,
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
    if !errors.is_empty() {
        return Err(Error::InvalidRequest { detail: "invalid summary request".into(), errors });
    }
    let conditions = filter.conditions(workgroup_id)?;
    let key = match (params.group_by, &params.list) {
        (GroupBy::Day, _) => "to_char(m.scanned_at AT TIME ZONE s.time_zone, 'YYYY-MM-DD')",
        (GroupBy::Device, _) => "m.device_id::text",
        (GroupBy::Site, _) => "m.site_id::text",
        (GroupBy::LoadDetail, Some(_)) => "d.value->>'code'",
        (GroupBy::LoadDetail, None) => "(d.value->>'list') || ':' || (d.value->>'code')",
    };
    let mut sql = QueryBuilder::new(format!(
        "SELECT {key} AS key, count(*) AS measurements, coalesce(sum(m.volume_m3), 0) AS volume_m3,
                sum(m.payload_t) AS payload_t
         FROM (SELECT * FROM measurements"
    ));
    conditions.push_where(&mut sql);
    sql.push(") m JOIN sites s ON s.id = m.site_id");
    match (params.group_by, &params.list) {
        (GroupBy::LoadDetail, Some(list)) => {
            // One row per measurement: its value in that list, or none.
            sql.push(
                " LEFT JOIN LATERAL (SELECT e AS value FROM jsonb_array_elements(m.load_details) e WHERE e->>'list' = ",
            );
            sql.push_bind(list).push(" LIMIT 1) d ON true");
        }
        // One row per load detail of each measurement (or one without, for none).
        (GroupBy::LoadDetail, None) => {
            sql.push(" LEFT JOIN LATERAL jsonb_array_elements(m.load_details) d(value) ON true");
        }
        _ => {}
    }
    sql.push(" GROUP BY 1 ORDER BY 1");
    let groups: Vec<SummaryGroup> = sql.build_query_as().fetch_all(&state.db).await?;
    Ok(Json(Summary { group_by: params.group_by, groups }))
}
