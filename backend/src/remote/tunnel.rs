//! The scanner's tunnel: `GET /api/v1/agent/tunnel` (device credential, WebSocket). The
//! cloud is the yamux client: it opens a stream per session; the scanner opens none.

use std::future::poll_fn;
use std::task::Poll;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use myscanner_protocol::tunnel::{self, Codec, Received, WsIo};
use tokio::sync::mpsc;

use super::registry::{Opening, Registry};
use crate::auth::AuthenticatedDevice;
use crate::auth::client_addr::ClientAddr;
use crate::http::Result;
use crate::state::AppState;

/// How the service speaks axum's messages to the tunnel adapter.
pub fn codec() -> Codec<Message> {
    Codec {
        binary: Message::Binary,
        ping: || Message::Ping(Default::default()),
        received: |message| match message {
            Message::Binary(data) => Received::Data(data),
            Message::Close(_) => Received::Close,
            _ => Received::Control,
        },
    }
}

/// An idle tunnel costs its buffers: small ones keep a thousand idle scanners cheap, and
/// frames larger than a buffer are still read (in several reads).
const TUNNEL_READ_BUFFER: usize = 4 * 1024;

const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The scanner's remote-control tunnel (WebSocket; binary messages carry yamux frames). Held
/// while remote control is allowed on the scanner; refused when it is not.
#[utoipa::path(get, path = "/api/v1/agent/tunnel", tag = "agent",
    security(("device_credential" = [])),
    responses(
        (status = 101, description = "Switching protocols: the tunnel is open"),
        (status = 409, description = "Remote control is switched off on the scanner (`remote-control-disabled`)"),
        (status = 426, description = "Not a WebSocket request (`websocket-required`)")))]
pub async fn open(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    ClientAddr(address): ClientAddr,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let allowed = sqlx::query_scalar!("SELECT allow_remote_control FROM devices WHERE id = $1", device.device_id)
        .fetch_one(&state.db)
        .await?;
    if !allowed {
        return Err(super::remote_control_disabled());
    }
    let upgrade = upgrade.map_err(|_| crate::http::Error::UpgradeRequired)?;
    let registry = state.remote.clone();
    let device_id = device.device_id;
    Ok(super::limited(upgrade).read_buffer_size(TUNNEL_READ_BUFFER).on_upgrade(move |ws| async move {
        let _running = registry.task();
        hold(registry, device_id, address, ws).await;
    }))
}

async fn hold(registry: Registry, device_id: uuid::Uuid, address: std::net::IpAddr, ws: WebSocket) {
    let (tunnel, mut openings) = registry.attach(device_id, address).await;
    tracing::info!(%device_id, tunnel_id = %tunnel.id, "tunnel open");
    // Revoked or switched off between the request's checks and now: the cut-off may have
    // come before this tunnel was registered.
    if super::registry::not_allowed(registry.db(), &[device_id]).await.map_or(true, |gone| !gone.is_empty()) {
        tunnel.closed.cancel();
    }
    // The scanner pings; silence for `DEAD_AFTER` means it is gone.
    let io = WsIo::new(ws, codec(), None, tunnel::DEAD_AFTER);
    let mut connection = yamux::Connection::new(io, tunnel::yamux_config(), yamux::Mode::Client);
    let outcome = tokio::select! {
        outcome = drive(&mut connection, &mut openings) => outcome,
        () = tunnel.closed.cancelled() => {
            // Bounded: a scanner that stopped reading cannot hold the close up.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, poll_fn(|cx| connection.poll_close(cx))).await;
            Ok(())
        }
    };
    match outcome {
        Ok(()) => tracing::info!(%device_id, tunnel_id = %tunnel.id, "tunnel closed"),
        Err(error) => tracing::info!(%device_id, tunnel_id = %tunnel.id, %error, "tunnel lost"),
    }
    registry.detach(&tunnel).await;
}

/// Runs the multiplexer: opens the streams sessions ask for and reads the scanner's frames,
/// until the connection ends.
async fn drive<T>(
    connection: &mut yamux::Connection<T>,
    openings: &mut mpsc::Receiver<Opening>,
) -> Result<(), yamux::ConnectionError>
where
    T: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin,
{
    let mut waiting: Option<Opening> = None;
    poll_fn(|cx| {
        loop {
            if waiting.is_none() {
                waiting = match openings.poll_recv(cx) {
                    Poll::Ready(opening) => opening,
                    Poll::Pending => None,
                };
            }
            let Some(reply) = waiting.take() else { break };
            match connection.poll_new_outbound(cx) {
                Poll::Ready(stream) => {
                    let _ = reply.send(stream);
                }
                Poll::Pending => {
                    waiting = Some(reply);
                    break;
                }
            }
        }
        loop {
            match connection.poll_next_inbound(cx) {
                // Scanners open no streams: one that does gets it closed.
                Poll::Ready(Some(Ok(stream))) => drop(stream),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}
