//! The remote-control tunnel: yamux streams carried in the binary messages of one
//! WebSocket that the scanner holds open to `/api/v1/agent/tunnel`.
//!
//! - The scanner is the yamux *server*: it only accepts streams. The cloud opens one stream
//!   per remote session; the scanner connects it to its allow-listed local service and
//!   answers with one status byte ([`STREAM_READY`] or [`STREAM_REFUSED`]) before any
//!   session data, so a user learns at once when the service behind the scanner is down.
//!   The cloud speaks first ([`STREAM_REQUEST`]): yamux announces a new stream only with
//!   its first frame.
//! - Keepalive and dead-peer detection are WebSocket pings, handled by [`WsIo`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::read_ahead::ReadAhead;

/// Where the scanner opens its tunnel.
pub const AGENT_TUNNEL_PATH: &str = "/api/v1/agent/tunnel";

/// The cloud's first byte on a new stream: connect me to your remote-control service.
pub const STREAM_REQUEST: u8 = 1;

/// The scanner connected the stream to its local service; session data follows.
pub const STREAM_READY: u8 = 0;
/// The scanner could not reach its local service; the stream ends.
pub const STREAM_REFUSED: u8 = 1;

/// How often the scanner pings the cloud, and how long either side waits for any sign of
/// life before it gives the tunnel up.
pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const DEAD_AFTER: Duration = Duration::from_secs(60);

/// Sessions one tunnel carries at most at once.
pub const MAX_STREAMS: usize = 256;

/// The largest yamux frame, and the pieces session bytes are moved in: larger than yamux's
/// 16 KiB default, as each frame travels as one WebSocket message, so that bulk transfers
/// (a VNC screen update) take fewer messages; interleaving between the few sessions of one
/// scanner matters less.
pub const FRAME: usize = 64 * 1024;

/// Carries bytes both ways between a session's two ends until both have finished — one way
/// in a task of its own, the other in the caller's, so a busy session uses two cores — in
/// pieces of a [`FRAME`] (tokio's default of 8 KiB would make eight frames, WebSocket
/// messages and TLS writes of each). The first error ends both ways.
pub async fn join<A, B>(a: A, b: B) -> io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (a_rx, a_tx) = tokio::io::split(a);
    let (b_rx, b_tx) = tokio::io::split(b);
    let mut forward = tokio::spawn(pump(a_rx, b_tx));
    let _forward_ends_with_the_session = AbortOnDrop(forward.abort_handle());
    let backward = pump(b_rx, a_tx);
    tokio::pin!(backward);
    tokio::select! {
        done = &mut forward => {
            done.map_err(io::Error::other)??;
            backward.await
        }
        done = &mut backward => {
            done?;
            forward.await.map_err(io::Error::other)?
        }
    }
}

/// Copies `from` into `to` until `from` ends, then shuts `to` down.
async fn pump<R, W>(from: R, mut to: W) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    tokio::io::copy_buf(&mut tokio::io::BufReader::with_capacity(FRAME, from), &mut to).await?;
    to.shutdown().await
}

/// Aborts a task when dropped: what a session spawns ends with it.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The largest WebSocket message a tunnel, a session or a relay takes: more than [`WsIo`]
/// sends at once (a flush's worth of frames), far less than tungstenite's 64 MiB default,
/// which would let a misbehaving peer make us buffer that much.
pub const MAX_WEBSOCKET_MESSAGE: usize = 1024 * 1024;

/// What a WebSocket reads at once: TLS hands its plaintext over in records of at most
/// 16 KiB, and larger reads would only clear more buffer (tungstenite zeroes what it reads
/// into).
pub const WEBSOCKET_READ: usize = 16 * 1024;

/// The client side's WebSocket settings (the service applies the same limits).
pub fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WEBSOCKET_READ)
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE))
}

/// The multiplexer settings both ends use.
pub fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS);
    config.set_split_send_size(FRAME);
    config
}

/// What [`WsIo`] makes of a received WebSocket message.
pub enum Received {
    Data(Bytes),
    Close,
    /// Ping, pong and anything else that carries no tunnel bytes.
    Control,
}

/// How to make and read the messages of one WebSocket implementation (axum's on the
/// service, tungstenite's on the scanner), so [`WsIo`] works over either.
pub struct Codec<M> {
    pub binary: fn(Bytes) -> M,
    pub ping: fn() -> M,
    pub received: fn(M) -> Received,
}

/// The WebSocket address of `path` on an HTTP(S) base URL (http → ws, https → wss).
pub fn websocket_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_prefix("http").map_or_else(|| base.to_owned(), |rest| format!("ws{rest}"));
    format!("{base}{path}")
}

/// A client WebSocket (the scanner's tunnel, a link between replicas, the port forwarder).
pub type ClientSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<ReadAhead<TcpStream>>>;

/// Why a WebSocket could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered with an error status instead of switching protocols; the body
    /// is its problem document.
    Refused { status: u16, body: Vec<u8> },
    /// No answer: the address, the network or the handshake failed.
    Failed(tokio_tungstenite::tungstenite::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { status, body } => {
                write!(f, "refused ({status}): {}", String::from_utf8_lossy(body))
            }
            ConnectError::Failed(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Refused { .. } => None,
            ConnectError::Failed(error) => Some(error),
        }
    }
}

/// How long opening a WebSocket may take, all of it: the TCP connection, the TLS handshake
/// and the upgrade (a middlebox that lets TCP through and then stalls must not hang a
/// tunnel that would otherwise reconnect).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `url` with `Authorization: Bearer <token>`; `wss://` over `tls`.
/// Callers check the link first ([`crate::tls::check_link`]).
pub async fn connect(
    url: &str,
    token: &str,
    tls: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<ClientSocket, ConnectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open(url, token, tls)).await {
        Ok(opened) => opened,
        Err(_) => Err(ConnectError::Failed(tokio_tungstenite::tungstenite::Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no WebSocket to {url} within {} s", CONNECT_TIMEOUT.as_secs()),
        )))),
    }
}

async fn open(
    url: &str,
    token: &str,
    tls: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<ClientSocket, ConnectError> {
    use tokio_tungstenite::Connector;
    use tokio_tungstenite::tungstenite::error::UrlError;
    use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
    let mut request = url.into_client_request().map_err(ConnectError::Failed)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| ConnectError::Failed(Error::HttpFormat(e.into())))?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    let uri = request.uri();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let host = uri.host().ok_or(ConnectError::Failed(Error::Url(UrlError::NoHostName)))?;
    let socket = TcpStream::connect(format!("{host}:{port}")).await.map_err(|e| ConnectError::Failed(Error::Io(e)))?;
    // No Nagle: remote control is interactive, and every yamux frame is flushed as it is made.
    socket.set_nodelay(true).map_err(|e| ConnectError::Failed(Error::Io(e)))?;
    let connector = Some(Connector::Rustls(tls.clone()));
    let config = Some(websocket_config());
    match tokio_tungstenite::client_async_tls_with_config(request, ReadAhead::new(socket), config, connector).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(response)) => Err(ConnectError::Refused {
            status: response.status().as_u16(),
            body: response.into_body().unwrap_or_default(),
        }),
        Err(error) => Err(ConnectError::Failed(error)),
    }
}

/// How tungstenite's messages (the scanner's tunnel, links between replicas, the port
/// forwarder) map onto the adapter.
pub fn tungstenite_codec() -> Codec<tokio_tungstenite::tungstenite::Message> {
    use tokio_tungstenite::tungstenite::Message;
    Codec {
        binary: Message::Binary,
        ping: || Message::Ping(Bytes::new()),
        received: |message| match message {
            Message::Binary(data) => Received::Data(data),
            Message::Close(_) => Received::Close,
            _ => Received::Control,
        },
    }
}

/// A WebSocket as a byte stream for yamux: each flush of yamux (one frame) leaves as one
/// binary message. Sends pings when asked to and fails with `TimedOut` when the peer has been
/// silent for `dead_after`.
pub struct WsIo<S, M> {
    ws: S,
    codec: Codec<M>,
    reading: Bytes,
    writing: BytesMut,
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,
    ping_due: bool,
    dead_after: Duration,
    last_heard: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S, M, E> WsIo<S, M>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    pub fn new(ws: S, codec: Codec<M>, ping_every: Option<Duration>, dead_after: Duration) -> Self {
        let now = Instant::now();
        let next_ping = ping_every.map(|every| now + every);
        WsIo {
            ws,
            codec,
            reading: Bytes::new(),
            writing: BytesMut::new(),
            ping_every,
            next_ping,
            ping_due: false,
            dead_after,
            last_heard: now,
            timer: Box::pin(tokio::time::sleep_until(next_ping.map_or(now + dead_after, |p| p.min(now + dead_after)))),
        }
    }

    /// Keeps the peer and ourselves honest: pings when one is due, and errors when the peer
    /// has gone quiet. One timer serves both deadlines; it is re-armed only when it fires.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= self.last_heard + self.dead_after {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel peer silent"));
            }
            if let (Some(every), Some(next)) = (self.ping_every, self.next_ping)
                && now >= next
            {
                self.ping_due = true;
                self.next_ping = Some(now + every);
            }
            let silence_deadline = self.last_heard + self.dead_after;
            self.timer.as_mut().reset(self.next_ping.map_or(silence_deadline, |p| p.min(silence_deadline)));
        }
        if self.ping_due && Pin::new(&mut self.ws).poll_ready(cx).is_ready() {
            Pin::new(&mut self.ws).start_send((self.codec.ping)()).map_err(io::Error::other)?;
            self.ping_due = false;
            let _ = Pin::new(&mut self.ws).poll_flush(cx).map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.writing.is_empty() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io::Error::other)?;
            let message = (self.codec.binary)(std::mem::take(&mut self.writing).freeze());
            Pin::new(&mut self.ws).start_send(message).map_err(io::Error::other)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// A message larger than this is sent before more is buffered, so one unflushed writer
/// cannot grow the buffer without bound.
const MAX_MESSAGE: usize = 256 * 1024;

impl<S, M, E> AsyncRead for WsIo<S, M>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin,
    M: Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if !this.reading.is_empty() {
                let n = buf.len().min(this.reading.len());
                buf[..n].copy_from_slice(&this.reading[..n]);
                this.reading.advance(n);
                return Poll::Ready(Ok(n));
            }
            this.poll_keepalive(cx)?;
            let Some(message) = ready!(Pin::new(&mut this.ws).poll_next(cx)) else {
                return Poll::Ready(Ok(0));
            };
            this.last_heard = Instant::now();
            match (this.codec.received)(message.map_err(io::Error::other)?) {
                Received::Data(data) => this.reading = data,
                Received::Close => return Poll::Ready(Ok(0)),
                Received::Control => {}
            }
        }
    }
}

impl<S, M, E> AsyncWrite for WsIo<S, M>
where
    S: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin,
    M: Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.writing.len() >= MAX_MESSAGE {
            ready!(this.poll_send_buffered(cx))?;
        }
        this.writing.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // yamux stops reading while its writes are blocked: the silence check runs here too,
        // so a peer that vanished mid-transfer is still found out.
        this.poll_keepalive(cx)?;
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io::Error::other)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_close(cx).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_api_scheme() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8080/", AGENT_TUNNEL_PATH),
            "ws://127.0.0.1:8080/api/v1/agent/tunnel"
        );
        assert_eq!(
            websocket_url("https://cloud.example", AGENT_TUNNEL_PATH),
            "wss://cloud.example/api/v1/agent/tunnel"
        );
    }
}
