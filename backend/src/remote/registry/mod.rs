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
//!
//! This file: the registry and its bookkeeping (a tunnel attached, detached, located; a
//! session registered). `tunnels` and `sessions` are what it keeps, `events` what replicas
//! tell each other, `heartbeat` the beat and the sweep.

mod events;
mod heartbeat;
mod sessions;
mod tunnels;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use uuid::Uuid;

pub use self::heartbeat::not_allowed;
pub use self::sessions::{Counters, SessionControl};
pub use self::tunnels::{DeviceIo, DeviceStream, Opening, Tunnel};
use crate::clock::Clock;
use crate::config::RemoteConfig;

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
        let registered = sqlx::query!(
            "INSERT INTO device_tunnels (device_id, tunnel_id, replica_id, replica_url, remote_address)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (device_id) DO UPDATE SET tunnel_id = $2, replica_id = $3, replica_url = $4,
                 remote_address = $5, connected_at = now(), heartbeat_at = now()",
            device_id,
            tunnel.id,
            self.0.replica_id,
            self.0.replica_url,
            ipnet::IpNet::from(address),
        )
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
            sqlx::query!(
                "DELETE FROM device_tunnels WHERE device_id = $1 AND tunnel_id = $2",
                tunnel.device_id,
                tunnel.id,
            )
            .execute(&self.0.db)
            .await?;
            sqlx::query!(
                "UPDATE remote_sessions SET ended_at = now(), close_reason = 'tunnel_lost'
                 WHERE id = ANY($1) AND ended_at IS NULL",
                &riders,
            )
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
        sqlx::query_scalar!(
            "SELECT replica_url FROM device_tunnels
             WHERE device_id = $1 AND replica_id <> $2 AND heartbeat_at > now() - $3 * interval '1 second'",
            device_id,
            self.0.replica_id,
            self.stale_after_secs(),
        )
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

    /// The tunnels this replica holds open and the sessions it serves (for metrics).
    pub fn open_counts(&self) -> (usize, usize) {
        let tunnels =
            self.0.tunnels.lock().expect("tunnels lock").values().filter(|t| !t.closed.is_cancelled()).count();
        (tunnels, self.0.sessions.lock().expect("sessions lock").len())
    }

    /// Ends every session and tunnel of this replica and waits (briefly) until each has
    /// recorded its end; scanners reconnect to another replica.
    pub async fn shutdown(&self) {
        self.0.shutdown.cancel();
        self.0.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.0.tasks.wait()).await.is_err() {
            tracing::warn!("remote-control sessions still ending at shutdown");
        }
        let _ = sqlx::query!("DELETE FROM device_tunnels WHERE replica_id = $1", self.0.replica_id)
            .execute(&self.0.db)
            .await;
    }

    /// Completes when this replica begins shutting down.
    pub async fn stopped(&self) {
        self.0.shutdown.cancelled().await;
    }
}
