//! The time subscriptions and the weekly schedule are judged at.
//!
//! Real time in service. Tests stop it at a moment of their choosing (`set`) to walk a
//! subscription through its period end, grace and lapse, or a schedule through its
//! Saturdays, without waiting; everything else (timeouts, heartbeats, tokens) keeps real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// No moment set: real time.
const REAL: i64 = i64::MIN;

#[derive(Debug, Clone)]
pub struct Clock(Arc<AtomicI64>);

impl Default for Clock {
    fn default() -> Self {
        Clock(Arc::new(AtomicI64::new(REAL)))
    }
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self.0.load(Ordering::Relaxed) {
            REAL => Utc::now(),
            micros => DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now),
        }
    }

    /// Stops the clock at `at` (tests).
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp_micros(), Ordering::Relaxed);
    }

    /// Back to real time.
    pub fn resume(&self) {
        self.0.store(REAL, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_stands_still_until_resumed() {
        let clock = Clock::default();
        let at: DateTime<Utc> = "2027-03-01T00:00:00Z".parse().unwrap();
        clock.set(at);
        assert_eq!(clock.now(), at);
        clock.resume();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 5);
    }
}
