//! The scanner's side of sync (device credential): its own site only, and only while that
//! sync is enabled in the settings it reported.

use std::time::Duration;

use axum::extract::State;
use myscanner_protocol::sync::{Changes, Collection, Push, PushResult, Snapshot};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::Author;
use crate::auth::AuthenticatedDevice;
use crate::http::page::bounded;
use crate::http::{Error, Json, Path, Query, Result};
use crate::state::AppState;

/// Long polls answer within this, under the request timeout.
const MAX_WAIT_SECS: u64 = 25;

/// The collection named in the path, if the device has its sync enabled.
pub(super) async fn enabled(state: &AppState, device: &AuthenticatedDevice, collection: &str) -> Result<Collection> {
    let collection = Collection::parse(collection).ok_or(Error::NotFound)?;
    let settings =
        sqlx::query!("SELECT reference_scan_sync, load_list_sync FROM devices WHERE id = $1", device.device_id)
            .fetch_one(&state.db)
            .await?;
    let on = match collection {
        Collection::ReferenceScans => settings.reference_scan_sync,
        Collection::LoadLists => settings.load_list_sync,
    };
    if !on {
        return Err(Error::conflict(
            "sync-disabled",
            format!("{} sync is switched off on this scanner", collection.as_str()),
        ));
    }
    Ok(collection)
}

async fn record_sync(state: &AppState, device_id: Uuid, collection: Collection, pulled: Option<i64>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO sync_devices (device_id, collection, last_pull_at, last_revision, last_push_at)
         VALUES ($1, $2, CASE WHEN $3::int8 IS NOT NULL THEN now() END, $3, CASE WHEN $3::int8 IS NULL THEN now() END)
         ON CONFLICT (device_id, collection) DO UPDATE SET
             last_pull_at = COALESCE(EXCLUDED.last_pull_at, sync_devices.last_pull_at),
             last_revision = COALESCE(EXCLUDED.last_revision, sync_devices.last_revision),
             last_push_at = COALESCE(EXCLUDED.last_push_at, sync_devices.last_push_at)",
        device_id,
        collection.as_str(),
        pulled,
    )
    .execute(&state.db)
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullParams {
    /// The revision the scanner has; changes after it are returned.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Seconds to wait for a change when there is none (0–25, default 25).
    #[param(minimum = 0, maximum = 25)]
    pub wait: Option<u64>,
    /// At most this many changes (1–1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Changes of a collection on the device's site since a revision, oldest first. Waits up
/// to `wait` seconds for one when there is none, so changes propagate within moments.
#[utoipa::path(get, path = "/api/v1/agent/sync/{collection}", tag = "agent",
    params(("collection" = Collection, Path), PullParams),
    security(("device_credential" = [])),
    responses((status = 200, body = Changes),
        (status = 409, description = "That sync is switched off on the scanner (`sync-disabled`)")))]
pub async fn pull(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Path(collection): Path<String>,
    Query(params): Query<PullParams>,
) -> Result<Json<Changes>> {
    let collection = enabled(&state, &device, &collection).await?;
    let _waiting = state.long_polls.enter(device.device_id)?;
    let since = params.since.unwrap_or(0).max(0);
    let limit = bounded("limit", params.limit, 500, 1..=1000)?;
    let wait = bounded("wait", params.wait, MAX_WAIT_SECS, 0..=MAX_WAIT_SECS)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // A scanner waiting in a long poll is in step as of now: the dashboard sees it so.
    record_sync(&state, device.device_id, collection, Some(since)).await?;
    let mut woken = state.sync.subscribe(device.site_id);
    let (changes, more) = loop {
        let (changes, more) = super::changes(&state.db, device.site_id, collection, since, limit).await?;
        if !changes.is_empty() || !matches!(tokio::time::timeout_at(deadline, woken.changed()).await, Ok(Ok(()))) {
            break (changes, more);
        }
    };
    let revision = changes.last().map_or(since, |c| c.revision);
    record_sync(&state, device.device_id, collection, Some(revision)).await?;
    Ok(Json(Changes { changes, revision, more }))
}

/// Push the scanner's edits. Each applies if the record is still at the edit's base
/// revision; otherwise it is refused and the outcome carries the record as it stands.
#[utoipa::path(post, path = "/api/v1/agent/sync/{collection}", tag = "agent",
    params(("collection" = Collection, Path)),
    request_body = Push,
    security(("device_credential" = [])),
    responses((status = 200, body = PushResult),
        (status = 409, description = "That sync is switched off on the scanner (`sync-disabled`)")))]
pub async fn push(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Path(collection): Path<String>,
    Json(push): Json<Push>,
) -> Result<Json<PushResult>> {
    let collection = enabled(&state, &device, &collection).await?;
    if push.edits.len() > 1000 {
        return Err(Error::invalid_field("edits", "at most 1000 edits a push"));
    }
    if push.edits.iter().any(|e| e.base_revision < 0) {
        return Err(Error::invalid_field("edits", "base_revision is 0 for a new record, else the record's revision"));
    }
    let outcomes = super::apply(
        &state.db,
        device.workgroup_id,
        device.site_id,
        collection,
        &push.edits,
        Author::Device(device.device_id),
    )
    .await?;
    record_sync(&state, device.device_id, collection, None).await?;
    Ok(Json(PushResult { outcomes }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotParams {
    /// The previous page's `next_after`.
    pub after: Option<Uuid>,
    /// Records a page (1–5000, default 1000).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<i64>,
}

/// The live records of a collection on the device's site, a page at a time: how a new or
/// replaced scanner restores the site's state.
#[utoipa::path(get, path = "/api/v1/agent/sync/{collection}/snapshot", tag = "agent",
    params(("collection" = Collection, Path), SnapshotParams),
    security(("device_credential" = [])),
    responses((status = 200, body = Snapshot),
        (status = 409, description = "That sync is switched off on the scanner (`sync-disabled`)")))]
pub async fn snapshot(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    Path(collection): Path<String>,
    Query(params): Query<SnapshotParams>,
) -> Result<Json<Snapshot>> {
    let collection = enabled(&state, &device, &collection).await?;
    let limit = bounded("limit", params.limit, 1000, 1..=5000)?;
    Ok(Json(super::snapshot(&state.db, device.site_id, collection, params.after, limit).await?))
}
