//! A tunnel this replica holds, and the streams sessions open over it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::Error;
use crate::remote::device_offline;
use myscanner_protocol::tunnel::{STREAM_READY, STREAM_REQUEST};

/// How long a scanner has to connect a new stream to its local service.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for a new stream, answered by the task driving the tunnel.
pub type Opening = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// A tunnel this replica holds.
#[derive(Clone)]
pub struct Tunnel {
    pub id: Uuid,
    pub device_id: Uuid,
    pub(super) opener: mpsc::Sender<Opening>,
    /// Cancelled when the tunnel is gone, or to make it go.
    pub closed: CancellationToken,
    /// The sessions riding it, marked `tunnel_lost` if it drops.
    pub(super) riders: Arc<Mutex<HashSet<Uuid>>>,
    /// Room for sessions: yamux tears the whole connection down when asked for a stream
    /// beyond its limit, so the limit is kept here, below it.
    pub(super) room: Arc<Semaphore>,
}

/// The scanner's side of a session as a byte stream: a stream of a tunnel held here, or a
/// link to the replica that holds it.
pub struct DeviceStream {
    pub io: Box<dyn DeviceIo>,
    /// The tunnel's `closed`, when this replica holds it.
    pub tunnel_closed: Option<CancellationToken>,
    _rider: Option<(Rider, OwnedSemaphorePermit)>,
}

pub trait DeviceIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> DeviceIo for T {}

impl DeviceStream {
    pub fn routed(io: Box<dyn DeviceIo>) -> Self {
        DeviceStream { io, tunnel_closed: None, _rider: None }
    }
}

/// Keeps a session on its tunnel's rider list while the stream lives.
struct Rider {
    riders: Arc<Mutex<HashSet<Uuid>>>,
    session_id: Uuid,
}

impl Drop for Rider {
    fn drop(&mut self) {
        self.riders.lock().expect("riders lock").remove(&self.session_id);
    }
}

impl Tunnel {
    /// A new stream to the scanner's local service, once the scanner says it is connected.
    pub async fn open(&self, session_id: Uuid) -> Result<DeviceStream, Error> {
        let room = self
            .room
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::conflict("device-busy", "the scanner carries as many remote sessions as it can"))?;
        let mut status = [0u8; 1];
        let opened = async {
            let (reply, answer) = oneshot::channel();
            self.opener.send(reply).await.map_err(|_| device_offline())?;
            let mut io = answer.await.map_err(|_| device_offline())?.map_err(|_| device_offline())?.compat();
            io.write_all(&[STREAM_REQUEST]).await.map_err(|_| device_offline())?;
            io.read_exact(&mut status).await.map_err(|_| device_offline())?;
            Ok::<_, Error>(io)
        };
        let io = match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(Ok(io)) if status[0] == STREAM_READY => io,
            Ok(Ok(_)) => {
                return Err(Error::DeviceUnreachable(
                    "the scanner could not connect to its remote-control service".into(),
                ));
            }
            Ok(Err(error)) => return Err(error),
            // The agent never said whether it reached its service: the agent itself is
            // not answering (frozen, overloaded, a stalled link), not the service.
            Err(_) => return Err(Error::ScannerNotAnswering),
        };
        self.riders.lock().expect("riders lock").insert(session_id);
        let rider = Rider { riders: self.riders.clone(), session_id };
        Ok(DeviceStream { io: Box::new(io), tunnel_closed: Some(self.closed.clone()), _rider: Some((rider, room)) })
    }
}
