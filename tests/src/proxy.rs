//! A TCP proxy between the service (or an agent) and what it talks to, so that a test can
//! stage a network outage or a stopped process without touching the real services.

/// A TCP proxy on loopback the test controls: `cut` drops every connection through it and
/// refuses new ones until `restore` — a database or broker outage on demand; `freeze` holds
/// every connection open but passes no byte until `thaw` — a process stopped (SIGSTOP).
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    frozen: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` to `to`, holding each read back while the proxy is frozen.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if frozen.wait_for(|frozen| !frozen).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (frozen, _) = tokio::sync::watch::channel(false);
        let (accept_up, accept_generation, accept_frozen) = (up.clone(), generation.clone(), frozen.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let mut cut = accept_generation.subscribe();
                let frozen = accept_frozen.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let ((in_rx, in_tx), (out_rx, out_tx)) = (inbound.into_split(), outbound.into_split());
                    tokio::select! {
                        _ = async { tokio::join!(pump(in_rx, out_tx, frozen.clone()), pump(out_rx, in_tx, frozen)) } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpProxy { addr, up, generation, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
