//! A session this replica serves: its byte counters, and how it is ended from outside.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::remote::CloseReason;

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
    pub(super) end: CancellationToken,
    pub(super) reason: Arc<Mutex<Option<CloseReason>>>,
}

impl SessionControl {
    /// Ends the session; the first reason given is the one recorded.
    pub fn end(&self, reason: CloseReason) {
        self.reason.lock().expect("reason lock").get_or_insert(reason);
        self.end.cancel();
    }

    /// Whether it was ended from outside for a reason.
    pub(super) fn has_reason(&self) -> bool {
        self.reason.lock().expect("reason lock").is_some()
    }

    /// Completes when the session is ended from outside, with why.
    pub async fn ended(&self) -> CloseReason {
        self.end.cancelled().await;
        // Cancelled through the registry's shutdown token when no reason was set.
        self.reason.lock().expect("reason lock").unwrap_or(CloseReason::ServiceShutdown)
    }
}
