//! The scanner's end of remote control. While remote control is allowed on the scanner it
//! holds one WebSocket to the cloud (`/api/v1/agent/tunnel`, device credential), pings it,
//! and re-opens it with jittered backoff. The cloud opens a yamux stream per remote session;
//! each is connected to the one allow-listed local service (VNC on 127.0.0.1:5900 unless
//! configured otherwise) and to nothing else.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use myscanner_protocol::tls;
use myscanner_protocol::tunnel::{self, WsIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::backoff::Backoff;

/// The local service remote sessions reach when the device file names none.
pub const DEFAULT_TARGET: &str = "127.0.0.1:5900";

/// Holds the tunnel open until `shutdown`, reconnecting with the cloud's jittered backoff
/// (so a fleet does not return all at once after a cloud restart).
pub async fn run(api: Api, target: SocketAddr, shutdown: CancellationToken) {
    let mut backoff = Backoff::cloud();
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        match hold(&api, target, &shutdown).await {
            Ok(()) => break,
            Err(error) if refused_for_subscription(&error) => {
                if !api.wait_for_subscription("remote control", &shutdown).await {
                    break;
                }
                continue;
            }
            Err(error) => tracing::warn!(error = tls::describe(&error), "remote-control tunnel down"),
        }
        backoff.connection_ended(started);
        if !backoff.wait(&shutdown).await {
            break;
        }
    }
}

/// One tunnel's lifetime; `Ok` only on shutdown.
async fn hold(api: &Api, target: SocketAddr, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let ws = api.websocket(tunnel::AGENT_TUNNEL_PATH).await.context("opening the tunnel")?;
    tracing::info!("remote-control tunnel open");
    let io = WsIo::new(ws, tunnel::tungstenite_codec(), Some(tunnel::PING_EVERY), tunnel::DEAD_AFTER);
    let mut connection = yamux::Connection::new(io, tunnel::yamux_config(), yamux::Mode::Server);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => {
                let close = poll_fn(|cx| connection.poll_close(cx));
                let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
                return Ok(());
            }
            next = poll_fn(|cx| connection.poll_next_inbound(cx)) => next,
        };
        match next {
            Some(Ok(stream)) => {
                tokio::spawn(serve(stream, target));
            }
            Some(Err(error)) => return Err(error).context("tunnel failed"),
            None => anyhow::bail!("the cloud closed the tunnel"),
        }
    }
}

/// One remote session: the stream is joined to the local service, or told why it cannot be.
async fn serve(stream: yamux::Stream, target: SocketAddr) {
    let mut stream = stream.compat();
    let mut request = [0u8; 1];
    if stream.read_exact(&mut request).await.is_err() || request[0] != tunnel::STREAM_REQUEST {
        return; // not a stream of this protocol: dropped
    }
    match TcpStream::connect(target).await {
        Ok(local) => {
            let _ = local.set_nodelay(true);
            if stream.write_all(&[tunnel::STREAM_READY]).await.is_ok() {
                let _ = tunnel::join(stream, local).await;
            }
        }
        Err(error) => {
            tracing::warn!(%target, %error, "remote session refused: local service unreachable");
            let _ = stream.write_all(&[tunnel::STREAM_REFUSED]).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// The cloud refused the tunnel for the workgroup's subscription.
fn refused_for_subscription(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref::<tunnel::ConnectError>(), Some(tunnel::ConnectError::Refused { status: 402, body })
        if String::from_utf8_lossy(body).contains("urn:myscanner:problem:subscription-inactive"))
}
