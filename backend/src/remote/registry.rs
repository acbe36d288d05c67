//! Who is connected, where, and which sessions ride which tunnel.
//!
//! In memory: the tunnels this replica holds and the user sessions it serves. In
//! PostgreSQL: one `device_tunnels` row per connected scanner naming the replica that holds
//! it, so any replica can route a session there and the dashboard can tell who is online.
//! Each replica heartbeats its rows; rows of a replica silent for three heartbeats are
//! swept, as are the sessions it served (`replica_lost`).
//!
//! Ending a session or cutting a scanner off is broadcast with `NOTIFY`, so it takes effect
//! on whichever replica holds it; the heartbeat also picks up end requests, should a
//! notification be missed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use uuid::Uuid;

use super::{CloseReason, device_offline};
use crate::clock::Clock;
use crate::config::RemoteConfig;
use crate::http::Error;
use myscanner_protocol::tunnel::{STREAM_READY, STREAM_REQUEST};

/// The `NOTIFY` channel replicas tell each other about sessions and scanners on.
const CHANNEL: &str = "myscanner_remote";

/// How long a scanner has to connect a new stream to its local service.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for a new stream, answered by the task driving the tunnel.
pub type Opening = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    db: PgPool,
    /// What subscriptions are judged by.
    clock: Clock,
    replica_id: Uuid,
    replica_url: String,
    heartbeat: Duration,
    tunnels: Mutex<HashMap<Uuid, Tunnel>>,
    sessions: Mutex<HashMap<Uuid, SessionControl>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A tunnel this replica holds.
#[derive(Clone)]
pub struct Tunnel {
    pub id: Uuid,
    pub device_id: Uuid,
    opener: mpsc::Sender<Opening>,
    /// Cancelled when the tunnel is gone, or to make it go.
    pub closed: CancellationToken,
    /// The sessions riding it, marked `tunnel_lost` if it drops.
    riders: Arc<Mutex<HashSet<Uuid>>>,
    /// Room for sessions: yamux tears the whole connection down when asked for a stream
    /// beyond its limit, so the limit is kept here, below it.
    room: Arc<Semaphore>,
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

/// Bytes each way and the last activity of a session.
pub struct Counters {
    pub to_device: AtomicU64,
    pub from_device: AtomicU64,
    started: Instant,
    last_active_ms: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        Counters {
            to_device: AtomicU64::new(0),
            from_device: AtomicU64::new(0),
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
        }
    }

    pub fn add(&self, counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_active_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)))
    }

    pub fn totals(&self) -> (i64, i64) {
        let get = |c: &AtomicU64| i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        (get(&self.to_device), get(&self.from_device))
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// How a session this replica serves is ended from outside it.
#[derive(Clone)]
pub struct SessionControl {
    pub device_id: Uuid,
    pub counters: Arc<Counters>,
    end: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
}

impl SessionControl {
    /// Ends the session; the first reason given is the one recorded.
    pub fn end(&self, reason: CloseReason) {
        self.reason.lock().expect("reason lock").get_or_insert(reason);
        self.end.cancel();
    }

    /// Whether it was ended from outside for a reason.
    fn has_reason(&self) -> bool {
        self.reason.lock().expect("reason lock").is_some()
    }

    /// Completes when the session is ended from outside, with why.
    pub async fn ended(&self) -> CloseReason {
        self.end.cancelled().await;
        // Cancelled through the registry's shutdown token when no reason was set.
        self.reason.lock().expect("reason lock").unwrap_or(CloseReason::ServiceShutdown)
    }
}

/// What replicas tell each other.
enum Event {
    EndSession(Uuid),
    /// The session's user lost the authority that opened it.
    Revoked(Uuid),
    /// Remote control switched off on the scanner: its sessions end, its tunnel closes.
    Disabled(Uuid),
    /// The scanner's credential was revoked: its tunnel closes.
    CutOff(Uuid),
    /// The session's workgroup no longer has an available subscription.
    Lapsed(Uuid),
}

impl Event {
    fn encode(&self) -> String {
        match self {
            Event::EndSession(id) => format!("end:{id}"),
            Event::Revoked(id) => format!("revoked:{id}"),
            Event::Disabled(id) => format!("disabled:{id}"),
            Event::CutOff(id) => format!("cutoff:{id}"),
            Event::Lapsed(id) => format!("lapsed:{id}"),
        }
    }

    fn decode(payload: &str) -> Option<Event> {
        let (kind, id) = payload.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "end" => Some(Event::EndSession(id)),
            "revoked" => Some(Event::Revoked(id)),
            "disabled" => Some(Event::Disabled(id)),
            "cutoff" => Some(Event::CutOff(id)),
            "lapsed" => Some(Event::Lapsed(id)),
            _ => None,
        }
    }
}

impl Registry {
    pub fn new(db: PgPool, config: &RemoteConfig, replica_url: String, clock: Clock) -> Self {
        Registry(Arc::new(Inner {
            db,
            clock,
            replica_id: Uuid::now_v7(),
            replica_url,
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            tunnels: Mutex::default(),
            sessions: Mutex::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }))
    }

    pub fn replica_id(&self) -> Uuid {
        self.0.replica_id
    }

    pub fn db(&self) -> &PgPool {
        &self.0.db
    }

    /// Counts a tunnel or session as running, so shutdown waits for it to record its end.
    pub fn task(&self) -> TaskTrackerToken {
        self.0.tasks.token()
    }

    /// Registers a new tunnel of `device_id`; an older one of the same scanner is closed.
    pub async fn attach(&self, device_id: Uuid, address: IpAddr) -> (Tunnel, mpsc::Receiver<Opening>) {
        let (opener, openings) = mpsc::channel(16);
        let tunnel = Tunnel {
            id: Uuid::now_v7(),
            device_id,
            opener,
            closed: self.0.shutdown.child_token(),
            riders: Arc::default(),
            room: Arc::new(Semaphore::new(myscanner_protocol::tunnel::MAX_STREAMS - 1)),
        };
        if let Some(old) = self.0.tunnels.lock().expect("tunnels lock").insert(device_id, tunnel.clone()) {
            old.closed.cancel();
        }
        let registered = sqlx::query(
            "INSERT INTO device_tunnels (device_id, tunnel_id, replica_id, replica_url, remote_address)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (device_id) DO UPDATE SET tunnel_id = $2, replica_id = $3, replica_url = $4,
                 remote_address = $5, connected_at = now(), heartbeat_at = now()",
        )
        .bind(device_id)
        .bind(tunnel.id)
        .bind(self.0.replica_id)
        .bind(&self.0.replica_url)
        .bind(address)
        .execute(&self.0.db)
        .await;
        if let Err(error) = registered {
            // Sessions through this replica still work; the next heartbeat cannot repair the
            // row, so other replicas see the scanner offline until it reconnects.
            tracing::warn!(%device_id, %error, "tunnel not registered");
        }
        (tunnel, openings)
    }

    /// Forgets a tunnel that is gone; sessions that rode it are recorded as `tunnel_lost`,
    /// unless they were ended for a reason of their own first (remote control switched
    /// off closes the tunnel after ending its sessions), which they record themselves.
    pub async fn detach(&self, tunnel: &Tunnel) {
        // The riders first: once `closed` fires, their sessions start leaving the list.
        let riders: Vec<Uuid> = {
            let sessions = self.0.sessions.lock().expect("sessions lock");
            let riders = tunnel.riders.lock().expect("riders lock");
            riders.iter().copied().filter(|id| sessions.get(id).is_none_or(|c| !c.has_reason())).collect()
        };
        tunnel.closed.cancel();
        {
            let mut tunnels = self.0.tunnels.lock().expect("tunnels lock");
            if tunnels.get(&tunnel.device_id).is_some_and(|t| t.id == tunnel.id) {
                tunnels.remove(&tunnel.device_id);
            }
        }
        let result = async {
            sqlx::query("DELETE FROM device_tunnels WHERE device_id = $1 AND tunnel_id = $2")
                .bind(tunnel.device_id)
                .bind(tunnel.id)
                .execute(&self.0.db)
                .await?;
            sqlx::query(
                "UPDATE remote_sessions SET ended_at = now(), close_reason = 'tunnel_lost'
                 WHERE id = ANY($1) AND ended_at IS NULL",
            )
            .bind(&riders)
            .execute(&self.0.db)
            .await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(device_id = %tunnel.device_id, %error, "tunnel not deregistered; the sweep will");
        }
    }

    pub fn local_tunnel(&self, device_id: Uuid) -> Option<Tunnel> {
        self.0.tunnels.lock().expect("tunnels lock").get(&device_id).filter(|t| !t.closed.is_cancelled()).cloned()
    }

    /// The address of the other replica holding the scanner's tunnel, if one does.
    pub async fn locate(&self, device_id: Uuid) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT replica_url FROM device_tunnels
             WHERE device_id = $1 AND replica_id <> $2 AND heartbeat_at > now() - $3 * interval '1 second'",
        )
        .bind(device_id)
        .bind(self.0.replica_id)
        .bind(self.stale_after_secs())
        .fetch_optional(&self.0.db)
        .await
    }

    /// A replica silent for this long (three heartbeats) is gone, and its tunnels offline.
    pub fn stale_after_secs(&self) -> f64 {
        3.0 * self.0.heartbeat.as_secs_f64()
    }

    pub fn register_session(&self, session_id: Uuid, device_id: Uuid) -> SessionControl {
        let control = SessionControl {
            device_id,
            counters: Arc::new(Counters::new()),
            end: self.0.shutdown.child_token(),
            reason: Arc::default(),
        };
        self.0.sessions.lock().expect("sessions lock").insert(session_id, control.clone());
        control
    }

    pub fn unregister_session(&self, session_id: Uuid) {
        self.0.sessions.lock().expect("sessions lock").remove(&session_id);
    }

    /// Ends a session wherever it is served.
    pub async fn end_session(&self, session_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::EndSession(session_id)).await
    }

    /// `user_id` lost the authority to control devices in `workgroup_id` (in every
    /// workgroup with `None`): their sessions there end, wherever they are served. The
    /// heartbeat finds any this misses (a session opened meanwhile, a lost notification).
    pub async fn authority_lost(&self, user_id: Uuid, workgroup_id: Option<Uuid>) -> Result<(), sqlx::Error> {
        let sessions: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM remote_sessions
             WHERE user_id = $1 AND ($2::uuid IS NULL OR workgroup_id = $2) AND ended_at IS NULL",
        )
        .bind(user_id)
        .bind(workgroup_id)
        .fetch_all(&self.0.db)
        .await?;
        for session_id in sessions {
            self.broadcast(Event::Revoked(session_id)).await?;
        }
        Ok(())
    }

    /// The workgroup's subscription stopped providing cloud features (cancelled, or changed
    /// to a lapsed period): its sessions end, wherever they are served. A lapse that comes
    /// with time alone is found by the heartbeat.
    pub async fn subscription_ended(&self, workgroup_id: Uuid) -> Result<(), sqlx::Error> {
        let sessions: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM remote_sessions WHERE workgroup_id = $1 AND ended_at IS NULL")
                .bind(workgroup_id)
                .fetch_all(&self.0.db)
                .await?;
        for session_id in sessions {
            self.broadcast(Event::Lapsed(session_id)).await?;
        }
        Ok(())
    }

    /// Remote control was switched off on the scanner: refuse from now on, end what runs.
    pub async fn remote_control_disabled(&self, device_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::Disabled(device_id)).await
    }

    /// The scanner's credential was revoked: its tunnel closes wherever it is held.
    pub async fn cut_off(&self, device_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::CutOff(device_id)).await
    }

    /// Applied here at once, and on every replica through `NOTIFY`.
    async fn broadcast(&self, event: Event) -> Result<(), sqlx::Error> {
        self.apply(&event);
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(event.encode()).execute(&self.0.db).await?;
        Ok(())
    }

    fn apply(&self, event: &Event) {
        let end_sessions = |device_id: Uuid, reason: CloseReason| {
            for control in self.0.sessions.lock().expect("sessions lock").values() {
                if control.device_id == device_id {
                    control.end(reason);
                }
            }
        };
        let end_session = |id: Uuid, reason: CloseReason| {
            if let Some(control) = self.0.sessions.lock().expect("sessions lock").get(&id) {
                control.end(reason);
            }
        };
        let close_tunnel = |device_id: Uuid| {
            if let Some(tunnel) = self.0.tunnels.lock().expect("tunnels lock").get(&device_id) {
                tunnel.closed.cancel();
            }
        };
        match *event {
            Event::EndSession(id) => end_session(id, CloseReason::EndedByAdmin),
            Event::Revoked(id) => end_session(id, CloseReason::AccessRevoked),
            Event::Lapsed(id) => end_session(id, CloseReason::SubscriptionInactive),
            Event::Disabled(device_id) => {
                end_sessions(device_id, CloseReason::RemoteControlDisabled);
                close_tunnel(device_id);
            }
            Event::CutOff(device_id) => close_tunnel(device_id),
        }
    }

    /// Heartbeats, sweeps and listens until shutdown.
    pub async fn run(self) {
        let mut listener = None;
        let mut beat = tokio::time::interval(self.0.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.0.shutdown.cancelled() => break,
                _ = beat.tick() => {
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                    if let Err(error) = self.beat().await {
                        tracing::warn!(%error, "remote-control heartbeat failed");
                    }
                }
                notification = recv(&mut listener) => match notification {
                    Ok(notification) => {
                        if let Some(event) = Event::decode(notification.payload()) {
                            self.apply(&event);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "remote-control notifications lost; relying on heartbeats");
                        listener = None;
                    }
                },
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.0.db).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    async fn beat(&self) -> Result<(), sqlx::Error> {
        let db = &self.0.db;
        let stale = self.stale_after_secs();
        let (devices, tunnels): (Vec<Uuid>, Vec<Uuid>) =
            self.0.tunnels.lock().expect("tunnels lock").values().map(|t| (t.device_id, t.id)).unzip();
        // Upserted, not just refreshed: rows swept while this replica could not reach the
        // database (an outage longer than three heartbeats) come back.
        sqlx::query(
            "INSERT INTO device_tunnels (device_id, tunnel_id, replica_id, replica_url)
             SELECT device_id, tunnel_id, $3, $4 FROM UNNEST($1::uuid[], $2::uuid[]) AS t (device_id, tunnel_id)
             ON CONFLICT (device_id) DO UPDATE SET heartbeat_at = now()
             WHERE device_tunnels.tunnel_id = EXCLUDED.tunnel_id",
        )
        .bind(&devices)
        .bind(&tunnels)
        .bind(self.0.replica_id)
        .bind(&self.0.replica_url)
        .execute(db)
        .await?;
        // A tunnel whose scanner was revoked or switched off while a notification was lost.
        for device_id in not_allowed(db, &devices).await? {
            self.apply(&Event::Disabled(device_id));
        }
        let (ids, to_device, from_device) = {
            let sessions = self.0.sessions.lock().expect("sessions lock");
            let mut columns = (vec![], vec![], vec![]);
            for (id, control) in sessions.iter() {
                let (to, from) = control.counters.totals();
                columns.0.push(*id);
                columns.1.push(to);
                columns.2.push(from);
            }
            columns
        };
        let end_requested: Vec<Option<Uuid>> = sqlx::query_scalar(
            "UPDATE remote_sessions s SET heartbeat_at = now(), bytes_to_device = c.to_device,
                 bytes_from_device = c.from_device
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[]) AS c (id, to_device, from_device)
             WHERE s.id = c.id AND s.ended_at IS NULL
             RETURNING CASE WHEN s.end_requested_at IS NOT NULL THEN s.id END",
        )
        .bind(&ids)
        .bind(&to_device)
        .bind(&from_device)
        .fetch_all(db)
        .await?;
        for id in end_requested.into_iter().flatten() {
            self.apply(&Event::EndSession(id));
        }
        // Sessions of workgroups whose subscription lapsed since the last beat (first: their
        // scanners' tunnels close below, and the session's reason is the lapse).
        let lapsed: Vec<Uuid> = sqlx::query_scalar(
            "SELECT r.id FROM remote_sessions r LEFT JOIN subscriptions s ON s.workgroup_id = r.workgroup_id
             WHERE r.id = ANY($1) AND r.ended_at IS NULL AND NOT subscription_available(s, $2)",
        )
        .bind(&ids)
        .bind(self.0.clock.now())
        .fetch_all(db)
        .await?;
        for id in lapsed {
            self.apply(&Event::Lapsed(id));
        }
        // Their scanners' tunnels close too (a scanner is refused a new one until renewal),
        // once no session rides them: the replica serving a session ends it first, with its
        // reason, and a tunnel closed under it would have it recorded as `tunnel_lost`.
        let lapsed_devices: Vec<Uuid> = sqlx::query_scalar(
            "SELECT d.id FROM devices d LEFT JOIN subscriptions s ON s.workgroup_id = d.workgroup_id
             WHERE d.id = ANY($1) AND NOT subscription_available(s, $2)
               AND NOT EXISTS (SELECT 1 FROM remote_sessions r WHERE r.device_id = d.id AND r.ended_at IS NULL)",
        )
        .bind(&devices)
        .bind(self.0.clock.now())
        .fetch_all(db)
        .await?;
        for device_id in lapsed_devices {
            self.apply(&Event::CutOff(device_id));
        }
        // Sessions whose user no longer may control devices in their workgroup.
        let revoked: Vec<Uuid> = sqlx::query_scalar(
            "SELECT s.id FROM remote_sessions s WHERE s.id = ANY($1) AND s.ended_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM memberships m WHERE m.user_id = s.user_id AND m.workgroup_id = s.workgroup_id
                     AND 'control_devices' = ANY(m.permissions))",
        )
        .bind(&ids)
        .fetch_all(db)
        .await?;
        for id in revoked {
            self.apply(&Event::Revoked(id));
        }
        // What replicas that died left behind.
        sqlx::query("DELETE FROM device_tunnels WHERE heartbeat_at < now() - $1 * interval '1 second'")
            .bind(stale)
            .execute(db)
            .await?;
        sqlx::query(
            "UPDATE remote_sessions SET ended_at = heartbeat_at, close_reason = 'replica_lost'
             WHERE ended_at IS NULL AND heartbeat_at < now() - $1 * interval '1 second'",
        )
        .bind(stale)
        .execute(db)
        .await?;
        Ok(())
    }

    /// Ends every session and tunnel of this replica and waits (briefly) until each has
    /// recorded its end; scanners reconnect to another replica.
    pub async fn shutdown(&self) {
        self.0.shutdown.cancel();
        self.0.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.0.tasks.wait()).await.is_err() {
            tracing::warn!("remote-control sessions still ending at shutdown");
        }
        let _ = sqlx::query("DELETE FROM device_tunnels WHERE replica_id = $1")
            .bind(self.0.replica_id)
            .execute(&self.0.db)
            .await;
    }

    /// Completes when this replica begins shutting down.
    pub async fn stopped(&self) {
        self.0.shutdown.cancelled().await;
    }
}

/// Of `devices`, those that may not hold a tunnel: remote control off, or no live credential.
pub async fn not_allowed(db: &PgPool, devices: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT d.id FROM devices d WHERE d.id = ANY($1) AND (NOT d.allow_remote_control
             OR NOT EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = d.id AND c.revoked_at IS NULL))",
    )
    .bind(devices)
    .fetch_all(db)
    .await
}

async fn recv(listener: &mut Option<PgListener>) -> Result<sqlx::postgres::PgNotification, sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}
