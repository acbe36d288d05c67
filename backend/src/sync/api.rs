//! The dashboard's side of sync: a site's reference scans and load detail lists, editing
//! the lists (`manage_workgroup`), and when each scanner last synced.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use myscanner_protocol::sync::{Collection, Edit, LoadList, Outcome, Record, Snapshot};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Author;
use super::device::SnapshotParams;
use crate::auth::{CurrentUser, Permission};
use crate::http::{Error, Json, Path, Query, Result};
use crate::state::AppState;

/// The site, if it is the workgroup's.
async fn site_of(state: &AppState, workgroup_id: Uuid, site_id: Uuid) -> Result<()> {
    let found = sqlx::query_scalar!("SELECT id FROM sites WHERE workgroup_id = $1 AND id = $2", workgroup_id, site_id)
        .fetch_optional(&state.db)
        .await?;
    found.map(|_| ()).ok_or(Error::NotFound)
}

/// A site's live reference scans or load detail lists, a page at a time, each with who
/// (which scanner or user) changed it last and when.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}/sync/{collection}", tag = "sync",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path), ("collection" = Collection, Path), SnapshotParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = Snapshot)))]
pub async fn records(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id, collection)): Path<(Uuid, Uuid, String)>,
    Query(params): Query<SnapshotParams>,
) -> Result<Json<Snapshot>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ViewData)?;
    site_of(&state, workgroup_id, site_id).await?;
    let collection = Collection::parse(&collection).ok_or(Error::NotFound)?;
    let limit = crate::http::page::bounded("limit", params.limit, 1000, 1..=5000)?;
    Ok(Json(super::snapshot(&state.db, site_id, collection, params.after, limit).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListEdit {
    pub list: LoadList,
    /// The list's revision this edit is based on (0 to create); absent, the edit applies
    /// over whatever stands.
    pub base_revision: Option<i64>,
}

/// Applies a user's edit of a list, refusing it with 409 when the list changed meanwhile.
async fn edit_list(
    state: &AppState,
    user: &CurrentUser,
    wg: Uuid,
    site: Uuid,
    id: Uuid,
    base: Option<i64>,
    list: Option<LoadList>,
) -> Result<Outcome> {
    user.access(&state.db, wg).await?.require(Permission::ManageWorkgroup)?;
    site_of(state, wg, site).await?;
    let base_revision = base.unwrap_or(super::ANY_REVISION);
    let edit = Edit { edit_id: Uuid::now_v7(), id, base_revision, record: list.map(Record::LoadList) };
    let outcome =
        super::apply(&state.db, wg, site, Collection::LoadLists, &[edit], Author::User(user.id)).await?.remove(0);
    if !outcome.applied {
        let why =
            if outcome.current.deleted { "the list has been deleted" } else { "the list changed since that revision" };
        return Err(Error::conflict("sync-conflict", format!("{why} (now at revision {})", outcome.current.revision)));
    }
    Ok(outcome)
}

/// Create or replace a load detail list; every scanner of the site with list sync receives it.
#[utoipa::path(put, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}/sync/load-lists/{list_id}", tag = "sync",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path), ("list_id" = Uuid, Path)),
    request_body = ListEdit,
    security(("user_jwt" = [])),
    responses((status = 200, body = Outcome),
        (status = 409, description = "The list changed or was deleted since `base_revision` (`sync-conflict`)")))]
pub async fn put_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id, list_id)): Path<(Uuid, Uuid, Uuid)>,
    Json(edit): Json<ListEdit>,
) -> Result<Json<Outcome>> {
    Ok(Json(edit_list(&state, &user, workgroup_id, site_id, list_id, edit.base_revision, Some(edit.list)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// The list's revision the deletion is based on; absent, whatever stands is deleted.
    pub base_revision: Option<i64>,
}

/// Delete a load detail list (a tombstone: scanners that were offline learn of it too).
#[utoipa::path(delete, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}/sync/load-lists/{list_id}", tag = "sync",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path), ("list_id" = Uuid, Path), DeleteParams),
    security(("user_jwt" = [])),
    responses((status = 204),
        (status = 409, description = "The list changed or was deleted since `base_revision` (`sync-conflict`)")))]
pub async fn delete_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id, list_id)): Path<(Uuid, Uuid, Uuid)>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode> {
    edit_list(&state, &user, workgroup_id, site_id, list_id, params.base_revision, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceSync {
    pub device_id: Uuid,
    pub name: String,
    pub collection: String,
    /// Whether the scanner reports this sync as enabled.
    pub enabled: bool,
    pub last_pull_at: Option<DateTime<Utc>>,
    /// The revision the scanner had pulled up to.
    pub last_revision: Option<i64>,
    pub last_push_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStatus {
    /// The site's latest revision.
    pub revision: i64,
    /// Per scanner of the site and collection.
    pub devices: Vec<DeviceSync>,
}

/// When each scanner of the site last synced, and how far it is.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}/sync-status", tag = "sync",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 200, body = SyncStatus)))]
pub async fn status(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<SyncStatus>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ViewData)?;
    site_of(&state, workgroup_id, site_id).await?;
    // Every device has both collections, from the VALUES list; the CASE picks one of two
    // NOT NULL settings.
    let devices = sqlx::query_as!(
        DeviceSync,
        r#"SELECT d.id AS device_id, d.name, c.collection AS "collection!",
                CASE c.collection WHEN 'reference-scans' THEN d.reference_scan_sync ELSE d.load_list_sync END
                    AS "enabled!",
                s.last_pull_at, s.last_revision, s.last_push_at
         FROM devices d CROSS JOIN (VALUES ('reference-scans'), ('load-lists')) AS c (collection)
         LEFT JOIN sync_devices s ON s.device_id = d.id AND s.collection = c.collection
         WHERE d.workgroup_id = $1 AND d.site_id = $2
         ORDER BY d.name, d.id, c.collection"#,
        workgroup_id,
        site_id,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(SyncStatus { revision: super::head(&state.db, site_id).await?, devices }))
}
