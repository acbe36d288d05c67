//! How fast a scan goes: how long a probe waits (following the target's round trips), how
//! many are in flight (backing off when answers stop), and how many leave per second.

use std::time::{Duration, Instant};

use super::ScanSettings;

/// RFC 6298's estimator: the probe timeout follows the target's round trips (smoothed
/// round trip plus four times its variation), within the configured bounds.
pub(super) struct RttEstimator {
    smoothed: Option<f64>,
    variation: f64,
    timeout: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    pub(super) fn new(settings: &ScanSettings) -> Self {
        RttEstimator {
            smoothed: None,
            variation: 0.0,
            timeout: settings.initial_timeout,
            min: settings.min_timeout,
            max: settings.max_timeout,
        }
    }

    /// How long the next probe waits for an answer.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes in one answered probe's round trip, in seconds.
    pub(super) fn observe(&mut self, sample: f64) {
        let (smoothed, variation) = match self.smoothed {
            None => (sample, sample / 2.0),
            Some(s) => (0.875 * s + 0.125 * sample, 0.75 * self.variation + 0.25 * (s - sample).abs()),
        };
        self.smoothed = Some(smoothed);
        self.variation = variation;
        self.timeout = Duration::from_secs_f64(smoothed + 4.0 * variation).clamp(self.min, self.max);
    }
}

/// How many probes may be in flight: it grows by one while every probe is answered and
/// halves (to no fewer than 8) when one is not, since silence may mean the target or the
/// path is overloaded.
pub(super) struct Window {
    size: f64,
    max: f64,
}

impl Window {
    /// Starts at 64, or lower if the settings allow fewer.
    pub(super) fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight as f64;
        Window { size: 64.0f64.min(max), max }
    }

    pub(super) fn has_room(&self, in_flight: usize) -> bool {
        (in_flight as f64) < self.size.floor().max(1.0)
    }

    pub(super) fn answered(&mut self) {
        self.size = (self.size + 1.0).min(self.max);
    }

    pub(super) fn unanswered(&mut self) {
        self.size = (self.size / 2.0).max(8.0);
    }
}

/// The per-target rate cap as a budget: probes may go out in small bursts, and the scanner
/// sleeps only when it is a few milliseconds ahead (timers are too coarse for one sleep a
/// probe).
pub(super) struct RateCap {
    per_second: f64,
    started: Instant,
    sent: f64,
}

impl RateCap {
    pub(super) fn new(rate_per_sec: u32) -> Self {
        RateCap { per_second: f64::from(rate_per_sec.max(1)), started: Instant::now(), sent: 0.0 }
    }

    /// Waits until one more probe keeps within the cap, and counts it.
    pub(super) async fn next_probe(&mut self) {
        let ahead = self.sent / self.per_second - self.started.elapsed().as_secs_f64();
        if ahead > 0.005 {
            tokio::time::sleep(Duration::from_secs_f64(ahead)).await;
        }
        self.sent += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings;
    use super::*;

    #[test]
    fn the_timeout_follows_the_round_trips() {
        let mut estimator = RttEstimator::new(&settings(vec![]));
        assert_eq!(estimator.timeout(), Duration::from_millis(500));
        // The first answer: its round trip, with half of it as the variation.
        estimator.observe(0.100);
        assert_eq!(estimator.timeout(), Duration::from_millis(300));
        // The same again: the variation shrinks by a quarter.
        estimator.observe(0.100);
        assert_eq!(estimator.timeout(), Duration::from_millis(250));
    }

    #[test]
    fn the_timeout_stays_within_its_bounds() {
        let mut fast = RttEstimator::new(&settings(vec![]));
        for _ in 0..20 {
            fast.observe(0.000_1);
        }
        assert_eq!(fast.timeout(), Duration::from_millis(20));
        let mut slow = RttEstimator::new(&settings(vec![]));
        slow.observe(1.0);
        assert_eq!(slow.timeout(), Duration::from_millis(2000));
    }

    #[test]
    fn the_window_grows_while_answered_and_halves_on_silence() {
        let mut window = Window::new(100);
        assert!(window.has_room(63) && !window.has_room(64));
        for _ in 0..50 {
            window.answered();
        }
        assert!(window.has_room(99) && !window.has_room(100), "capped at the settings' maximum");
        window.unanswered();
        assert!(window.has_room(49) && !window.has_room(50));
        for _ in 0..10 {
            window.unanswered();
        }
        assert!(window.has_room(7) && !window.has_room(8), "never below 8");
    }

    #[test]
    fn the_window_starts_at_the_maximum_when_that_is_below_64() {
        let mut window = Window::new(4);
        window.answered();
        assert!(window.has_room(3) && !window.has_room(4));
    }
}
