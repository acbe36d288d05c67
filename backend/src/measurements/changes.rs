//! The change feed: every measurement of a workgroup in the order it was stored, after a
//! cursor. Integrations poll it; a measurement a scanner uploads late (after being offline)
//! still comes after the cursor, because the order is arrival, not scan time.
//!
//! The ingest consumer assigns `seq` under a lock held to commit, so sequence order is
//! commit order: once a poll has seen `seq` N, no measurement below N can appear later.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::api::{Measurement, query_measurements};
use crate::auth::{Caller, Permission};
use crate::http::page::encode_cursor;
use crate::http::{Json, PageParams, Path, Query, Result};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The `next_cursor` of the previous poll; absent to start from the first measurement.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Items per poll, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MeasurementChanges)]
pub struct Changes {
    pub items: Vec<Measurement>,
    /// Always present: poll again with it. Unchanged when nothing new arrived.
    pub next_cursor: String,
    /// Whether more are waiting right now (poll again at once rather than after a pause).
    pub more: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FeedCursor {
    seq: i64,
}

/// Measurements in the order they were stored, after a cursor.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/measurements/changes", tag = "measurements",
    params(("workgroup_id" = Uuid, Path), ChangesParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Changes)))]
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(params): Query<ChangesParams>,
) -> Result<Json<Changes>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ViewData)?;
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let after = page.after::<FeedCursor>()?.map_or(0, |c| c.seq);
    let mut rows = query_measurements!(
        "SELECT ",
        " FROM measurements WHERE workgroup_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        workgroup_id,
        after,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items: Vec<Measurement> = rows.into_iter().map(Measurement::from).collect();
    let last = items.last().map_or(after, |m| m.seq);
    Ok(Json(Changes { items, next_cursor: encode_cursor(&FeedCursor { seq: last }), more }))
}
