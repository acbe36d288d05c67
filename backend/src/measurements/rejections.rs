//! Messages the ingest consumer could never store, for platform operators to investigate.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::CurrentUser;
use crate::http::{Error, Json, Page, PageParams, Query, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestRejection {
    pub id: Uuid,
    pub rejected_at: DateTime<Utc>,
    /// Why the message can never be stored.
    #[schema(example = "unknown schema version 7")]
    pub reason: String,
    pub routing_key: String,
    /// The broker user that published it.
    pub broker_user: Option<String>,
    /// The device the message claimed to come from (not verified).
    pub claimed_device_id: Option<Uuid>,
    pub payload_size: i32,
    /// The first 4 KiB of the message, as text (invalid UTF-8 replaced).
    pub payload_excerpt: String,
}

struct RejectionRow {
    id: Uuid,
    rejected_at: DateTime<Utc>,
    reason: String,
    routing_key: String,
    broker_user: Option<String>,
    claimed_device_id: Option<Uuid>,
    payload_size: i32,
    payload_excerpt: Vec<u8>,
}

/// List rejected measurement messages, newest first (platform operators).
#[utoipa::path(get, path = "/api/v1/ingest-rejections", tag = "ingest",
    params(PageParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<IngestRejection>)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<IngestRejection>>> {
    if !user.is_operator {
        return Err(Error::Forbidden("platform_operator"));
    }
    let limit = page.limit()?;
    let rows = sqlx::query_as!(
        RejectionRow,
        "SELECT id, rejected_at, reason, routing_key, broker_user, claimed_device_id, payload_size, payload_excerpt
         FROM ingest_rejections WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| IngestRejection {
            id: r.id,
            rejected_at: r.rejected_at,
            reason: r.reason,
            routing_key: r.routing_key,
            broker_user: r.broker_user,
            claimed_device_id: r.claimed_device_id,
            payload_size: r.payload_size,
            payload_excerpt: String::from_utf8_lossy(&r.payload_excerpt).into_owned(),
        })
        .collect();
    Ok(Json(Page::from_rows(items, limit, |r| r.id)))
}
