//! Sessions across replicas. A session that reaches a replica not holding the scanner's
//! tunnel is routed, over a WebSocket, to the replica that does (its address is in
//! `device_tunnels`). The user's replica keeps the audit; the holder only relays. Replicas
//! authenticate to each other with a one-minute token for that one session and device,
//! signed with the shared JWT key under an audience of its own.

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use myscanner_protocol::tunnel::{self, ConnectError, WsIo};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use uuid::Uuid;

use super::registry::{Counters, DeviceStream};
use super::{CloseReason, device_offline, remote_control_disabled, session};
use crate::http::{Error, Path, Result};
use crate::state::AppState;

/// How long the user's replica waits for the holder to connect the stream.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// The internal route a replica relays a routed session on. Not part of the public API.
pub const RELAY_PATH: &str = "/internal/v1/tunnels/{device_id}/sessions/{session_id}";

/// A replica, authenticated by its token for exactly this session and device.
pub struct Replica;

impl FromRequestParts<AppState> for Replica {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        const INVALID: Error = Error::Unauthorized("invalid replica token");
        let token = crate::auth::principal::bearer(parts)?;
        let claims = state.jwt.verify_replica(token).ok_or(INVALID)?;
        let Path((device_id, session_id)) = Path::<(Uuid, Uuid)>::from_request_parts(parts, state).await?;
        if claims.sub != session_id || claims.device != device_id {
            return Err(INVALID);
        }
        Ok(Replica)
    }
}

/// The holder's side: relays a routed session to the tunnel held here.
pub async fn relay(
    State(state): State<AppState>,
    _replica: Replica,
    Path((device_id, session_id)): Path<(Uuid, Uuid)>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let upgrade = upgrade.map_err(|_| Error::UpgradeRequired)?;
    // One relay per session: a token seen twice (replayed) finds the session taken.
    let claimed = sqlx::query!(
        "UPDATE remote_sessions SET relayed_at = now()
         WHERE id = $1 AND device_id = $2 AND ended_at IS NULL AND relayed_at IS NULL",
        session_id,
        device_id,
    )
    .execute(&state.db)
    .await?;
    if claimed.rows_affected() != 1 {
        return Err(Error::Unauthorized("invalid replica token"));
    }
    let tunnel = state.remote.local_tunnel(device_id).ok_or_else(device_offline)?;
    let stream = tunnel.open(session_id).await?;
    Ok(super::limited(upgrade).on_upgrade(move |ws| async move {
        let _running = state.remote.task();
        let idle = Duration::from_secs(state.config.remote.idle_timeout_secs);
        let stopped = async {
            state.remote.stopped().await;
            CloseReason::ServiceShutdown
        };
        session::pipe(ws, stream, std::sync::Arc::new(Counters::new()), idle, stopped).await;
    }))
}

/// The user's side: a link to the replica holding the tunnel, as the session's scanner side.
pub async fn open(state: &AppState, replica_url: &str, device_id: Uuid, session_id: Uuid) -> Result<DeviceStream> {
    let token = state.jwt.issue_replica(session_id, device_id)?;
    let path =
        RELAY_PATH.replace("{device_id}", &device_id.to_string()).replace("{session_id}", &session_id.to_string());
    let url = tunnel::websocket_url(replica_url, &path);
    let ws = match tokio::time::timeout(ROUTE_TIMEOUT, tunnel::connect(&url, &token, &state.client_tls)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(ConnectError::Refused { status, body })) => return Err(holder_refused(status, &body)),
        Ok(Err(error)) => {
            // The holder is unreachable: it died since its last heartbeat, or is stopping.
            tracing::warn!(%device_id, replica = replica_url, %error, "routing a session failed");
            return Err(device_offline());
        }
        Err(_) => return Err(Error::DeviceUnreachable("the replica holding the tunnel did not answer".into())),
    };
    let io = WsIo::new(ws, tunnel::tungstenite_codec(), Some(tunnel::PING_EVERY), tunnel::DEAD_AFTER);
    Ok(DeviceStream::routed(Box::new(io.compat())))
}

/// The holder's refusal, as the same problem the user would have had from it.
fn holder_refused(status: u16, body: &[u8]) -> Error {
    let problem: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = problem["type"].as_str().and_then(|t| t.strip_prefix("urn:myscanner:problem:")).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or("the scanner's service is unreachable").to_owned();
    match code {
        "device-offline" => device_offline(),
        "remote-control-disabled" => remote_control_disabled(),
        "device-service-unreachable" => Error::DeviceUnreachable(detail),
        "scanner-not-answering" => Error::ScannerNotAnswering,
        _ => Error::Internal(anyhow::anyhow!("the replica holding the tunnel answered {status}: {problem}")),
    }
}
