//! How the agent waits before trying the cloud or the broker again: exponentially longer
//! waits up to a ceiling, each jittered so that a fleet cut off by the same outage does not
//! come back in lockstep, and afresh once a connection has lived a while.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Backoff {
    first: Duration,
    ceiling: Duration,
    /// Failures in a row.
    failures: u32,
}

impl Backoff {
    /// HTTPS and WSS to MyScanner: starting up, the tunnel, internal scans.
    pub const fn cloud() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// The broker: a scanner's measurements wait in its outbox, so it comes back sooner.
    pub const fn broker() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(15))
    }

    pub const fn new(first: Duration, ceiling: Duration) -> Backoff {
        Backoff { first, ceiling, failures: 0 }
    }

    /// The wait after one more failure: between half and all of `first × 2^(failures-1)`,
    /// capped at the ceiling.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let step = self.first.saturating_mul(1 << (self.failures - 1).min(16)).min(self.ceiling);
        step.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// A connection made at `started` that lived longer than the ceiling starts the backoff
    /// afresh; one that failed at once keeps climbing.
    pub fn connection_ended(&mut self, started: Instant) {
        if started.elapsed() > self.ceiling {
            self.failures = 0;
        }
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Sleeps the next wait.
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_wait()).await;
    }

    /// Sleeps the next wait; `false` when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = self.sleep() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_up_to_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for ceiling in [1, 2, 4, 8, 8, 8] {
            let wait = backoff.next_wait();
            let ceiling = Duration::from_secs(ceiling);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{wait:?} outside {:?}..={ceiling:?}", ceiling / 2);
        }
        backoff.succeeded();
        assert!(backoff.next_wait() <= Duration::from_secs(1));
    }
}
