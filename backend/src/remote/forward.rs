//! `myscanner remote`: a local port for native VNC clients. Each connection to it opens a
//! remote session (signed in with the user's token) and carries its bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use myscanner_protocol::tls;
use myscanner_protocol::tunnel::{self, WsIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use uuid::Uuid;

/// Where and as whom the forwarder opens sessions.
#[derive(Clone)]
pub struct Target {
    pub api_url: String,
    pub workgroup_id: Uuid,
    pub device_id: Uuid,
    pub token: String,
    /// Trust for `wss://`: a pinned CA, or the platform's roots.
    pub tls: Arc<rustls::ClientConfig>,
}

impl Target {
    fn session_url(&self) -> String {
        let path = format!("/api/v1/workgroups/{}/devices/{}/remote", self.workgroup_id, self.device_id);
        tunnel::websocket_url(&self.api_url, &path)
    }
}

/// Accepts on `listener` until the task is dropped, a session per connection.
pub async fn serve(listener: TcpListener, target: Target) -> anyhow::Result<()> {
    loop {
        let (socket, peer) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            match forward(socket, &target).await {
                Ok(()) => tracing::info!(%peer, "session closed"),
                Err(error) => tracing::warn!(%peer, error = tls::describe(&error), "session failed"),
            }
        });
    }
}

/// Binds `listen` and forwards until interrupted. The link to MyScanner is encrypted unless
/// it stays on this machine or `allow_insecure` says otherwise.
pub async fn run(listen: SocketAddr, target: Target, allow_insecure: bool) -> anyhow::Result<()> {
    if tls::check_link(&target.api_url, allow_insecure)? == tls::Link::Insecure {
        tracing::warn!(api_url = %target.api_url, "--allow-insecure: the session and your token cross the network unencrypted");
    }
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, device_id = %target.device_id, "forwarding: point a VNC client here");
    tokio::select! {
        result = serve(listener, target) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn forward(socket: TcpStream, target: &Target) -> anyhow::Result<()> {
    let _ = socket.set_nodelay(true);
    let ws = tunnel::connect(&target.session_url(), &target.token, &target.tls).await.context("opening the session")?;
    let session = WsIo::new(ws, tunnel::tungstenite_codec(), Some(tunnel::PING_EVERY), tunnel::DEAD_AFTER).compat();
    tunnel::join(socket, session).await?;
    Ok(())
}
