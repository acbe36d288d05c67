//! Remote control from the user's side, and what sits behind a scanner.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use myscanner_protocol::tunnel::{self, ConnectError};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub type Session = tunnel::ClientSocket;

/// A TCP echo server on loopback: the scanner's "VNC" in tests.
pub async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rx, mut tx) = socket.split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            });
        }
    });
    addr
}

pub fn session_url(base_url: &str, workgroup_id: Uuid, device_id: Uuid) -> String {
    tunnel::websocket_url(base_url, &format!("/api/v1/workgroups/{workgroup_id}/devices/{device_id}/remote"))
}

/// Opens a session; a refusal comes back as its status and problem document.
pub async fn open(
    url: &str,
    token: &str,
    tls: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<Session, (StatusCode, Value)> {
    match tunnel::connect(url, token, tls).await {
        Ok(ws) => Ok(ws),
        Err(ConnectError::Refused { status, body }) => {
            Err((StatusCode::from_u16(status).unwrap(), serde_json::from_slice(&body).unwrap_or_default()))
        }
        Err(error) => panic!("session to {url}: {error}"),
    }
}

/// Sends `payload` through the session in binary messages while reading the echo back;
/// returns what came back.
pub async fn echo(session: &mut Session, payload: &[u8]) -> Vec<u8> {
    let (mut tx, mut rx) = session.split();
    let send = async {
        for chunk in payload.chunks(64 * 1024) {
            tx.send(Message::Binary(chunk.to_vec().into())).await.unwrap();
        }
    };
    let receive = async {
        let mut back = Vec::with_capacity(payload.len());
        while back.len() < payload.len() {
            match rx.next().await {
                Some(Ok(Message::Binary(data))) => back.extend_from_slice(&data),
                Some(Ok(Message::Close(frame))) => panic!("session closed mid-transfer: {frame:?}"),
                Some(Ok(_)) => {}
                other => panic!("session failed mid-transfer: {other:?}"),
            }
        }
        back
    };
    let ((), back) = tokio::join!(send, receive);
    back
}

/// A VNC client's first bytes through `myscanner remote`'s port forwarder (to `target`),
/// and their echo back.
pub async fn through_forwarder(target: myscanner::remote::forward::Target) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forwarded = listener.local_addr().unwrap();
    let forwarder = tokio::spawn(myscanner::remote::forward::serve(listener, target));
    let mut vnc = tokio::net::TcpStream::connect(forwarded).await.unwrap();
    vnc.write_all(b"RFB 003.008\n").await.unwrap();
    let mut back = [0u8; 12];
    vnc.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"RFB 003.008\n");
    drop(vnc);
    forwarder.abort();
}

/// Waits for the session's close frame and returns its reason.
pub async fn close_reason(session: &mut Session) -> String {
    loop {
        match session.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            Some(Ok(_)) => {}
            other => panic!("the session ended without a close frame: {other:?}"),
        }
    }
}
