//! Request rate limits per user and per API token: a generic cell rate algorithm (GCRA),
//! which allows a burst and then a steady rate, answered with 429 and `Retry-After`.
//!
//! Kept in memory per replica: behind N replicas a caller gets up to N times the limit.
//! That bounds abuse well enough without a shared store on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

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
