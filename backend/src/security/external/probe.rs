//! One probe of one port: a TCP connect, and a short wait for a greeting, telling open,
//! closed and filtered apart — and noting the resets some IDSs answer with.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What one probe tells about a port.
pub(super) enum Probe {
    Open { rtt: Duration, banner: Option<String>, reset_at_once: bool },
    Closed { rtt: Duration },
    Filtered,
}

impl Probe {
    /// The round trip of an answered probe, in seconds; `None` for one nobody answered.
    pub(super) fn rtt(&self) -> Option<f64> {
        match self {
            Probe::Open { rtt, .. } | Probe::Closed { rtt } => Some(rtt.as_secs_f64()),
            Probe::Filtered => None,
        }
    }
}

/// A guess at the service from well-known port numbers.
pub(super) fn service_guess(port: u16, banner: Option<&str>) -> Option<String> {
    if let Some(banner) = banner {
        let lower = banner.to_ascii_lowercase();
        for (needle, name) in [("ssh-", "ssh"), ("http/", "http"), ("smtp", "smtp"), ("ftp", "ftp"), ("rfb ", "vnc")] {
            if lower.starts_with(needle) || lower.contains(needle) {
                return Some(name.to_owned());
            }
        }
    }
    let name = match port {
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 | 8080 => "http",
        110 => "pop3",
        143 => "imap",
        443 | 8443 => "https",
        445 => "smb",
        1433 => "mssql",
        1521 => "oracle",
        3306 => "mysql",
        3389 => "rdp",
        5432 => "postgresql",
        5672 => "amqp",
        5900 => "vnc",
        _ => return None,
    };
    Some(name.to_owned())
}

/// Connects to `address` once, giving up after `timeout`.
pub(super) async fn probe(address: SocketAddr, timeout: Duration) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        // Connecting to a loopback port in the ephemeral range can meet itself (the kernel
        // picks the same port as the source): that is no listener, the port is closed.
        Ok(Ok(stream)) if stream.local_addr().ok() == Some(address) => Probe::Closed { rtt: started.elapsed() },
        Ok(Ok(mut stream)) => {
            let rtt = started.elapsed();
            // A service may greet first (SSH, SMTP, FTP, VNC); many wait for the client.
            let mut buffer = [0u8; 128];
            let read_started = Instant::now();
            let (banner, reset_at_once) =
                match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let text: String =
                            String::from_utf8_lossy(&buffer[..n]).chars().filter(|c| !c.is_control()).collect();
                        (Some(text.trim().to_owned()).filter(|t| !t.is_empty()), false)
                    }
                    // Reset straight after the handshake: what some IDSs do to every port
                    // they pretend is open. A clean close (FIN) is an ordinary service
                    // turning away a client that said nothing, and does not count.
                    Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => {
                        (None, read_started.elapsed() < Duration::from_millis(100))
                    }
                    Ok(Ok(_)) | Ok(Err(_)) => (None, false),
                    Err(_) => (None, false),
                };
            Probe::Open { rtt, banner, reset_at_once }
        }
        Ok(Err(error)) if error.kind() == ErrorKind::ConnectionRefused => Probe::Closed { rtt: started.elapsed() },
        // The handshake completed and the peer reset before the connect was reported: open,
        // and reset at once.
        Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => {
            Probe::Open { rtt: started.elapsed(), banner: None, reset_at_once: true }
        }
        _ => Probe::Filtered,
    }
}
