//! A user's remote-control session: a WebSocket of binary messages joined to a stream of the
//! scanner's tunnel (here or on another replica), recorded in `remote_sessions`.
//!
//! Everything that can refuse a session is checked before the WebSocket is accepted, so a
//! client gets a problem document at once (offline scanner, remote control off, missing
//! permission, service behind the scanner down), never a socket that hangs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use myscanner_protocol::tunnel;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::registry::{Counters, DeviceStream, SessionControl};
use super::{CloseReason, device_offline, peer, remote_control_disabled};
use crate::auth::client_addr::ClientAddr;
use crate::auth::{CurrentUser, Permission};
use crate::devices;
use crate::http::{Error, Path, Result};
use crate::state::AppState;

/// The subprotocol selected for browser clients (noVNC offers it).
const BINARY_PROTOCOL: &str = "binary";

/// How long a session whose scanner side ended waits to learn whether the whole tunnel went
/// (the tunnel's holder records `tunnel_lost`) before it records `device_closed`.
const TUNNEL_LOSS_GRACE: Duration = Duration::from_millis(250);

/// Open a remote-control session to a scanner: a WebSocket whose binary messages carry the
/// bytes of the scanner's remote-control service (VNC by default) both ways. Needs
/// `control_devices`. A browser, which cannot send `Authorization` on a WebSocket, offers
/// the subprotocols `binary` and `bearer.<token>`; `binary` is selected.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/devices/{device_id}/remote", tag = "remote",
    params(("workgroup_id" = Uuid, Path), ("device_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses(
        (status = 101, description = "Switching protocols: the session is open"),
        (status = 409, description = "The scanner is offline (`device-offline`) or remote control is switched off \
            on it (`remote-control-disabled`)"),
        (status = 426, description = "Not a WebSocket request (`websocket-required`)"),
        (status = 502, description = "The scanner could not reach its remote-control service \
            (`device-service-unreachable`)"),
        (status = 504, description = "The scanner's agent holds its tunnel but did not answer in time: frozen, \
            overloaded or a stalled link (`scanner-not-answering`)")))]
pub async fn connect(
    State(state): State<AppState>,
    user: CurrentUser,
    ClientAddr(address): ClientAddr,
    Path((workgroup_id, device_id)): Path<(Uuid, Uuid)>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ControlDevices)?;
    let device = devices::fetch(&state.db, workgroup_id, device_id).await?;
    if !device.settings.allow_remote_control {
        return Err(remote_control_disabled());
    }
    let upgrade = upgrade.map_err(|_| Error::UpgradeRequired)?;
    let session_id = Uuid::now_v7();
    // Recorded before the scanner is reached: a routed session's holder checks it exists.
    sqlx::query!(
        "INSERT INTO remote_sessions (id, workgroup_id, device_id, user_id, client_address, replica_id)
         VALUES ($1, $2, $3, $4, $5, $6)",
        session_id,
        workgroup_id,
        device_id,
        user.id,
        ipnet::IpNet::from(address),
        state.remote.replica_id(),
    )
    .execute(&state.db)
    .await?;
    let stream = match open_device_stream(&state, device_id, session_id).await {
        Ok(stream) => stream,
        Err(refused) => {
            // Never started: not a session.
            sqlx::query!("DELETE FROM remote_sessions WHERE id = $1", session_id).execute(&state.db).await?;
            return Err(refused);
        }
    };
    let control = state.remote.register_session(session_id, device_id);
    tracing::info!(%session_id, %device_id, user_id = %user.id, client = %address, "remote session open");
    let failed = (state.clone(), control.clone());
    Ok(super::limited(upgrade)
        .protocols([BINARY_PROTOCOL])
        .on_failed_upgrade(move |_| {
            let (state, control) = failed;
            tokio::spawn(async move { finish(&state, session_id, &control, CloseReason::ClientClosed).await });
        })
        .on_upgrade(move |ws| async move {
            let _running = state.remote.task();
            let idle = Duration::from_secs(state.config.remote.idle_timeout_secs);
            let reason = pipe(ws, stream, control.counters.clone(), idle, control.ended()).await;
            finish(&state, session_id, &control, reason).await;
        }))
}

/// The scanner's side of a new session: a stream of its tunnel if this replica holds it,
/// else a link to the replica that does.
pub async fn open_device_stream(state: &AppState, device_id: Uuid, session_id: Uuid) -> Result<DeviceStream> {
    if let Some(tunnel) = state.remote.local_tunnel(device_id) {
        return tunnel.open(session_id).await;
    }
    match state.remote.locate(device_id).await? {
        Some(replica_url) => peer::open(state, &replica_url, device_id, session_id).await,
        None => Err(device_offline()),
    }
}

/// Records the session's end, its reason and its byte counts. A reason already recorded
/// by the tunnel's holder (`tunnel_lost`) stands.
async fn finish(state: &AppState, session_id: Uuid, control: &SessionControl, reason: CloseReason) {
    state.remote.unregister_session(session_id);
    let (to_device, from_device) = control.counters.totals();
    if let Err(error) = record_end(&state.db, session_id, reason, to_device, from_device).await {
        tracing::error!(%session_id, %error, "remote session end not recorded; the sweep will");
    }
    tracing::info!(%session_id, reason = reason.as_str(), to_device, from_device, "remote session closed");
}

async fn record_end(db: &PgPool, id: Uuid, reason: CloseReason, to: i64, from: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE remote_sessions SET ended_at = COALESCE(ended_at, now()), close_reason = COALESCE(close_reason, $2),
             bytes_to_device = $3, bytes_from_device = $4, heartbeat_at = now()
         WHERE id = $1",
        id,
        reason.as_str(),
        to,
        from,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Joins the user's WebSocket and the scanner's stream until either side ends, the session
/// idles out, or `ended` completes; then closes the WebSocket with the reason. The user's
/// bytes travel in a task of their own and the scanner's in this one, so a busy session
/// uses two cores.
pub async fn pipe(
    ws: WebSocket,
    device: DeviceStream,
    counters: Arc<Counters>,
    idle: Duration,
    ended: impl Future<Output = CloseReason>,
) -> CloseReason {
    let DeviceStream { io, tunnel_closed, .. } = device;
    let (mut device_rx, mut device_tx) = tokio::io::split(io);
    let (mut user_tx, mut user_rx) = ws.split();
    let to_device = counters.clone();
    let mut upstream = tokio::spawn(async move {
        while let Some(Ok(message)) = user_rx.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Text(text) => text.into(),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if device_tx.write_all(&data).await.is_err() {
                return false;
            }
            // Counted as soon as the tunnel has them: the task may be ended at any later await.
            to_device.add(&to_device.to_device, data.len());
            if device_tx.flush().await.is_err() {
                return false;
            }
        }
        let _ = device_tx.shutdown().await;
        true
    });
    let _upstream_ends_with_the_session = tunnel::AbortOnDrop(upstream.abort_handle());
    let downstream = async {
        // Each read becomes a message without being copied.
        let mut buffer = bytes::BytesMut::new();
        loop {
            buffer.reserve(tunnel::FRAME);
            let Ok(n @ 1..) = device_rx.read_buf(&mut buffer).await else { break };
            if user_tx.send(Message::Binary(buffer.split().freeze())).await.is_err() {
                return false;
            }
            counters.add(&counters.from_device, n);
        }
        true
    };
    let idle_out = async {
        loop {
            let left = idle.saturating_sub(counters.idle_for());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    };
    let reason = tokio::select! {
        // An end from outside comes first: switching remote control off ends the session
        // (with its reason) and then closes the tunnel, and the tunnel's end must not be
        // taken for the cause.
        biased;
        reason = ended => reason,
        // The user's side went away, or the scanner's could not take the bytes.
        user_ended = &mut upstream => {
            if user_ended.unwrap_or(false) { CloseReason::ClientClosed } else { device_end(tunnel_closed).await }
        }
        device_ended = downstream => {
            if device_ended { device_end(tunnel_closed).await } else { CloseReason::ClientClosed }
        }
        () = idle_out => CloseReason::IdleTimeout,
    };
    // Not one more byte of the user's reaches the scanner once the session has ended.
    upstream.abort();
    let frame = CloseFrame {
        code: if reason == CloseReason::ServiceShutdown { close_code::AWAY } else { close_code::NORMAL },
        reason: reason.as_str().into(),
    };
    // Bounded: a client that stopped reading cannot keep the session from ending.
    let _ = tokio::time::timeout(Duration::from_secs(5), user_tx.send(Message::Close(Some(frame)))).await;
    reason
}

/// The scanner's side ended: its service closed the connection, or the tunnel dropped.
async fn device_end(tunnel_closed: Option<CancellationToken>) -> CloseReason {
    let tunnel_gone = match tunnel_closed {
        Some(closed) => tokio::time::timeout(TUNNEL_LOSS_GRACE, closed.cancelled()).await.is_ok(),
        // Routed: the holding replica records `tunnel_lost`, which `finish` keeps.
        None => {
            tokio::time::sleep(TUNNEL_LOSS_GRACE).await;
            false
        }
    };
    if tunnel_gone { CloseReason::TunnelLost } else { CloseReason::DeviceClosed }
}
