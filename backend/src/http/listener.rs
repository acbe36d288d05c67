//! Where connections come from: plain TCP, or TLS (`server.tls`). Either way each socket
//! has Nagle off (remote control is interactive) and is read ahead in large pieces
//! ([`ReadAhead`]: rustls and the tunnels' WebSockets read in small ones). TLS handshakes
//! run beside the accept loop, each bounded in time, so a slow or silent client holds up
//! no one else. hyper's own answers to unreadable requests leave as problem+json
//! ([`ProblemIo`]).

use std::net::SocketAddr;
use std::time::Duration;

use myscanner_protocol::read_ahead::ReadAhead;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::canned::ProblemIo;

/// A client that has not finished its handshake in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; a connection beyond them is closed at once (shed) rather
/// than left to wait behind clients that may never finish theirs.
const MAX_HANDSHAKES: usize = 1024;

type Socket = ReadAhead<TcpStream>;

/// Accepts on `listener`. A connection that failed on its own is skipped; a failure of the
/// listener (out of file descriptors and the like) pauses it rather than letting it spin.
async fn accept(listener: &TcpListener) -> (Socket, SocketAddr) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (ReadAhead::new(tcp), peer);
            }
            Err(error) if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) => {}
            Err(error) => {
                tracing::error!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Plain HTTP.
pub struct PlainListener(pub TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = ProblemIo<Socket>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (socket, peer) = accept(&self.0).await;
        (ProblemIo::new(socket), peer)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// HTTPS: hands axum connections whose TLS handshake is done.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<Socket>, SocketAddr)>,
    local_addr: SocketAddr,
    /// Stops the accept loop (and frees the port) when the listener goes.
    _stop: DropGuard,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        let local_addr = listener.local_addr().expect("a bound listener has an address");
        let (ready, handshaken) = mpsc::channel(64);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, acceptor, ready, stop.clone()));
        TlsListener { handshaken, local_addr, _stop: stop.drop_guard() }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<Socket>, SocketAddr)>,
    stop: CancellationToken,
) {
    let handshakes = std::sync::Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (socket, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = accept(&listener) => accepted,
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress: connection shed");
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = ProblemIo<TlsStream<Socket>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some((stream, peer)) => (ProblemIo::new(stream), peer),
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
