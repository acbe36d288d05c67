//! The dashboard's view of remote control: which scanners are online (and since when), the
//! audit of sessions, and ending one (workgroup admins).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::CloseReason;
use crate::auth::{CurrentUser, Permission};
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct OnlineDevice {
    pub device_id: Uuid,
    pub name: String,
    /// When its current tunnel opened.
    pub connected_at: DateTime<Utc>,
    /// Where the tunnel comes from.
    #[schema(value_type = Option<String>, example = "203.0.113.10")]
    pub remote_address: Option<IpAddr>,
    /// The replica holding the tunnel.
    pub replica_id: Uuid,
}

/// The workgroup's scanners with a remote-control tunnel open now.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/remote/online", tag = "remote",
    params(("workgroup_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 200, body = Vec<OnlineDevice>)))]
pub async fn online(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
) -> Result<Json<Vec<OnlineDevice>>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let devices = sqlx::query_as!(
        OnlineDevice,
        r#"SELECT d.id AS device_id, d.name, t.connected_at, t.remote_address AS "remote_address: IpAddr", t.replica_id
           FROM device_tunnels t JOIN devices d ON d.id = t.device_id
           WHERE d.workgroup_id = $1 AND t.heartbeat_at > now() - $2 * interval '1 second'
           ORDER BY d.name, d.id"#,
        workgroup_id,
        state.remote.stale_after_secs(),
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(devices))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteSession {
    pub id: Uuid,
    pub device_id: Uuid,
    pub user_id: Uuid,
    pub user_email: String,
    /// Where the user connected from.
    #[schema(value_type = Option<String>, example = "198.51.100.7")]
    pub client_address: Option<IpAddr>,
    pub started_at: DateTime<Utc>,
    /// Absent while the session is active.
    pub ended_at: Option<DateTime<Utc>>,
    pub close_reason: Option<CloseReason>,
    /// Bytes from the user to the scanner; for an active session, as of its last heartbeat.
    pub bytes_to_device: i64,
    pub bytes_from_device: i64,
    pub end_requested_at: Option<DateTime<Utc>>,
}

/// A checked statement reading [`RemoteSession`]s: `query_sessions!(before, after, args…)` is
/// `before` + the columns (`s` = remote_sessions, `u` = users) + `after`.
macro_rules! query_sessions {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::remote::api::RemoteSession,
            $before
                + r#"s.id, s.device_id, s.user_id, u.email AS user_email,
                     s.client_address AS "client_address: std::net::IpAddr", s.started_at, s.ended_at,
                     s.close_reason AS "close_reason: crate::remote::CloseReason", s.bytes_to_device,
                     s.bytes_from_device, s.end_requested_at"#
                + $after
            $(, $arg)*
        )
    };
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    pub device_id: Option<Uuid>,
    /// `true`: only active sessions; `false`: only ended ones.
    pub active: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// The workgroup's remote sessions, newest first: who, which scanner, from where, when,
/// bytes each way and why each ended. Workgroup admins (`manage_workgroup`).
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/remote-sessions", tag = "remote",
    params(("workgroup_id" = Uuid, Path), SessionFilter),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<RemoteSession>)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Query(filter): Query<SessionFilter>,
) -> Result<Json<Page<RemoteSession>>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let page = PageParams { limit: filter.limit, cursor: filter.cursor };
    let limit = page.limit()?;
    // Ids are UUIDv7: newest first is id order, and the id alone is the cursor.
    let rows = query_sessions!(
        "SELECT ",
        " FROM remote_sessions s JOIN users u ON u.id = s.user_id
         WHERE s.workgroup_id = $1 AND ($2::uuid IS NULL OR s.device_id = $2)
           AND ($3::boolean IS NULL OR (s.ended_at IS NULL) = $3) AND ($4::uuid IS NULL OR s.id < $4)
         ORDER BY s.id DESC LIMIT $5",
        workgroup_id,
        filter.device_id,
        filter.active,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |s| s.id)))
}

/// End an active session, wherever it is served. Accepted at once; the session closes
/// within moments with `ended_by_admin`.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/remote-sessions/{session_id}/end", tag = "remote",
    params(("workgroup_id" = Uuid, Path), ("session_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 202, body = RemoteSession),
        (status = 409, description = "The session has already ended (`session-ended`)")))]
pub async fn end(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, session_id)): Path<(Uuid, Uuid)>,
) -> Result<(StatusCode, Json<RemoteSession>)> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let session = query_sessions!(
        "WITH requested AS (
             UPDATE remote_sessions SET end_requested_at = COALESCE(end_requested_at, now()), end_requested_by = $3
             WHERE workgroup_id = $1 AND id = $2 AND ended_at IS NULL RETURNING *)
         SELECT ",
        " FROM requested s JOIN users u ON u.id = s.user_id",
        workgroup_id,
        session_id,
        user.id,
    )
    .fetch_optional(&state.db)
    .await?;
    let Some(session) = session else {
        let exists = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM remote_sessions WHERE workgroup_id = $1 AND id = $2) AS "exists!""#,
            workgroup_id,
            session_id,
        )
        .fetch_one(&state.db)
        .await?;
        return Err(if exists {
            Error::conflict("session-ended", "the session has already ended")
        } else {
            Error::NotFound
        });
    };
    state.remote.end_session(session_id).await?;
    Ok((StatusCode::ACCEPTED, Json(session)))
}
