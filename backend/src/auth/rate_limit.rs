//! Request rate limits per user, per API token and per scanner: a generic cell rate
//! algorithm (GCRA), which allows a burst and then a steady rate, answered with 429 and
//! `Retry-After`; and a cap on a scanner's long polls at once.
//!
//! Kept in memory per replica: behind N replicas a caller gets up to N times the limit.
//! That bounds abuse well enough without a shared store on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::http::Error;

pub struct RateLimiter {
    /// Time between requests at the steady rate.
    interval: Duration,
    /// How far ahead of the steady rate a caller may run (the burst).
    tolerance: Duration,
    /// Per key: the theoretical arrival time of its next request.
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter { interval, tolerance: interval * burst.saturating_sub(1), next: Mutex::new(HashMap::new()) }
    }

    /// Counts one request of `key`, or refuses it with the seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), Error> {
        let now = Instant::now();
        let mut next = self.next.lock().expect("rate limiter lock");
        if next.len() > 100_000 {
            // Forget callers that have been quiet long enough to be back at a full burst.
            next.retain(|_, at| *at > now);
        }
        let at = next.get(key).copied().unwrap_or(now).max(now);
        let ahead = at - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Err(Error::TooManyRequests { retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) });
        }
        next.insert(key.to_owned(), at + self.interval);
        Ok(())
    }
}

/// Long polls one scanner may hold at once: its two sync collections and its scan claims
/// need three, and a restarted agent may overlap its old ones for a while.
pub const LONG_POLLS_PER_DEVICE: usize = 8;

/// Requests of one scanner waiting at once (long polls), at most [`LONG_POLLS_PER_DEVICE`]:
/// each holds a connection and a task for up to 25 s.
#[derive(Default)]
pub struct LongPolls(Arc<Mutex<HashMap<Uuid, usize>>>);

/// One long poll in progress; it leaves its count when dropped.
pub struct LongPoll {
    held: Arc<Mutex<HashMap<Uuid, usize>>>,
    device_id: Uuid,
}

impl LongPolls {
    pub fn enter(&self, device_id: Uuid) -> Result<LongPoll, Error> {
        let mut held = self.0.lock().expect("long polls lock");
        let count = held.entry(device_id).or_default();
        if *count >= LONG_POLLS_PER_DEVICE {
            return Err(Error::TooManyRequests { retry_after: 1 });
        }
        *count += 1;
        Ok(LongPoll { held: self.0.clone(), device_id })
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("long polls lock");
        if let Some(count) = held.get_mut(&self.device_id) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_holds_a_bounded_number_of_long_polls() {
        let polls = LongPolls::default();
        let device = Uuid::now_v7();
        let held: Vec<LongPoll> = (0..LONG_POLLS_PER_DEVICE).map(|_| polls.enter(device).unwrap()).collect();
        assert!(matches!(polls.enter(device), Err(Error::TooManyRequests { .. })));
        polls.enter(Uuid::now_v7()).expect("devices are independent");
        drop(held);
        polls.enter(device).expect("released when the polls end");
        assert!(polls.0.lock().unwrap().is_empty(), "nothing left behind");
    }

    #[test]
    fn allows_a_burst_then_refuses_with_retry_after() {
        let limiter = RateLimiter::new(60, 3);
        for _ in 0..3 {
            limiter.check("user:a").unwrap();
        }
        match limiter.check("user:a") {
            Err(Error::TooManyRequests { retry_after }) => assert!((1..=2).contains(&retry_after)),
            other => panic!("expected 429, got {other:?}"),
        }
        limiter.check("user:b").expect("keys are independent");
    }
}
