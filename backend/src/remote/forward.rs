//! `myscanner remote`: a local port for native VNC clients. Each connection to it opens a
//! remote session (signed in with the user's token) and carries its bytes.

use std::net::SocketAddr;

use anyhow::Context;
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
                Err(error) => tracing::warn!(%peer, error = format!("{error:#}"), "session failed"),
            }
        });
    }
}

/// Binds `listen` and forwards until interrupted.
pub async fn run(listen: SocketAddr, target: Target) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, device_id = %target.device_id, "forwarding: point a VNC client here");
    tokio::select! {
        result = serve(listener, target) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn forward(mut socket: TcpStream, target: &Target) -> anyhow::Result<()> {
    let _ = socket.set_nodelay(true);
    let ws = tunnel::connect(&target.session_url(), &target.token).await.context("opening the session")?;
    let mut session = WsIo::new(ws, tunnel::tungstenite_codec(), Some(tunnel::PING_EVERY), tunnel::DEAD_AFTER).compat();
    tokio::io::copy_bidirectional(&mut socket, &mut session).await?;
    Ok(())
}
