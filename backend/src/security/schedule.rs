//! The weekly schedule: every Saturday 00:00 UTC each enabled scan is enqueued once.
//!
//! tokio-cron-scheduler only wakes the enqueuer up; the slot is computed from the clock
//! and passed in, so tests drive the schedule with any time they like. The database makes
//! "once" true (see `queue::enqueue_weekly`), and on start the service catches up the most
//! recent Saturday, in case it was down at midnight.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use super::queue;
use crate::clock::Clock;

/// The weekly slot at or before `now`: the latest Saturday 00:00 UTC.
pub fn latest_slot(now: DateTime<Utc>) -> DateTime<Utc> {
    let days_since_saturday = (now.weekday().num_days_from_sunday() + 1) % 7;
    let date = now.date_naive() - Duration::days(i64::from(days_since_saturday));
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// Enqueues the weekly scans of the slot `now` falls in (the latest Saturday), of the
/// workgroups whose subscription was available at that moment. Called by the cron wake-up
/// at Saturday 00:00 and once at start-up.
pub async fn enqueue_due(db: &PgPool, now: DateTime<Utc>) -> sqlx::Result<u64> {
    let slot = latest_slot(now);
    debug_assert_eq!(slot.weekday(), Weekday::Sat);
    let enqueued = queue::enqueue_weekly(db, slot, now).await?;
    if enqueued > 0 {
        tracing::info!(slot = %slot, enqueued, "weekly security scans enqueued");
    }
    Ok(enqueued)
}

/// Runs the weekly schedule until shutdown: a catch-up now, then a wake-up every
/// Saturday at 00:00 UTC.
pub async fn run(db: PgPool, clock: Clock, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Err(error) = enqueue_due(&db, clock.now()).await {
        tracing::error!(error = %error, "weekly security scans: catch-up failed");
    }
    let mut scheduler = JobScheduler::new().await?;
    let wake_db = db.clone();
    // sec min hour day-of-month month day-of-week, in UTC.
    scheduler
        .add(Job::new_async_tz("0 0 0 * * Sat", Utc, move |_, _| {
            let (db, clock) = (wake_db.clone(), clock.clone());
            Box::pin(async move {
                if let Err(error) = enqueue_due(&db, clock.now()).await {
                    tracing::error!(error = %error, "weekly security scans: enqueue failed");
                }
            })
        })?)
        .await?;
    scheduler.start().await?;
    shutdown.cancelled().await;
    scheduler.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_slot_is_the_latest_saturday_midnight() {
        // 2026-11-21 is a Saturday.
        assert_eq!(latest_slot(at("2026-11-21T00:00:00Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(latest_slot(at("2026-11-21T23:59:59Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(latest_slot(at("2026-11-22T10:00:00Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(latest_slot(at("2026-11-27T23:59:59Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(latest_slot(at("2026-11-28T00:00:00Z")), at("2026-11-28T00:00:00Z"));
    }
}
