//! The service's scan workers: a pool of slots that claims external scans from the queue
//! (one claim for every free slot), runs them while heartbeating, and records the outcome; beside them a reaper rescues jobs whose worker
//! died (lease expired) and fails internal scans their device did not claim in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::external::{self, ScanSettings};
use super::queue::{self, Claimed, ScanKind, ScanResult};
use crate::config::SecurityConfig;

/// Runs up to `workers` external scans at once, and the reaper, until shutdown. One claim
/// fills every free slot (a round trip for many jobs, not one each). A scan interrupted by
/// shutdown hands its job back without using up an attempt.
pub async fn run(db: PgPool, config: SecurityConfig, shutdown: CancellationToken) {
    let reaper = tokio::spawn(reap(db.clone(), config.clone(), shutdown.clone()));
    if config.workers > 0 {
        dispatch(db, config, shutdown).await;
    }
    let _ = reaper.await;
}

async fn dispatch(db: PgPool, config: SecurityConfig, shutdown: CancellationToken) {
    let settings = Arc::new(config.scan_settings());
    let lease = Duration::from_secs(config.lease_secs);
    let worker = hostname();
    let slots = Arc::new(Semaphore::new(config.workers));
    let mut running = tokio::task::JoinSet::new();
    while !shutdown.is_cancelled() {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let wait = match queue::claim_many(&db, ScanKind::External, None, &worker, lease, permits.len()).await {
            Ok(jobs) if !jobs.is_empty() => {
                for (job, permit) in jobs.into_iter().zip(permits) {
                    let (db, config, settings, shutdown) =
                        (db.clone(), config.clone(), settings.clone(), shutdown.clone());
                    running.spawn(async move {
                        execute(&db, &config, &settings, job, &shutdown).await;
                        drop(permit);
                    });
                }
                None
            }
            Ok(_) => Some(Duration::from_millis(config.poll_interval_ms)),
            Err(error) => {
                tracing::warn!(error = %error, "security worker: claim failed");
                Some(Duration::from_secs(1))
            }
        };
        while running.try_join_next().is_some() {}
        if let Some(wait) = wait {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
    // Scans running at shutdown hand their jobs back.
    while running.join_next().await.is_some() {}
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
        + &format!("-{}", std::process::id())
}

/// Runs one attempt of an external scan to its end, a lost lease, or shutdown.
pub async fn execute(
    db: &PgPool,
    config: &SecurityConfig,
    settings: &ScanSettings,
    job: Claimed,
    shutdown: &CancellationToken,
) {
    let lease = Duration::from_secs(config.lease_secs);
    let backoff = Duration::from_secs(config.retry_backoff_secs);
    let progress = Arc::new(AtomicU32::new(0f32.to_bits()));
    let scan = async {
        let Some(target) = job.target else {
            return Err("the device has not connected yet, so its public address is unknown".to_owned());
        };
        let progress = progress.clone();
        external::scan(target, settings, &config.allowed_targets, move |p| {
            progress.store(p.to_bits(), Ordering::Relaxed)
        })
        .await
        .map(|o| ScanResult::External {
            target,
            ports: o.open,
            ids_suspected: o.ids_suspected,
            ids_reasons: o.ids_reasons,
        })
    };
    // Heartbeats renew the lease while the scan runs; a refused heartbeat means this
    // attempt was given up on (presumed dead) and another may be running: stop at once.
    let heartbeats = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            let p = f32::from_bits(progress.load(Ordering::Relaxed));
            match queue::heartbeat(db, &job, p, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => tracing::warn!(error = %error, "security worker: heartbeat failed"),
            }
        }
    };
    let result = tokio::select! {
        result = scan => Some(result),
        () = heartbeats => {
            tracing::warn!(job = %job.id, "security scan: lease lost; abandoning the attempt");
            None
        }
        () = shutdown.cancelled() => {
            if let Err(error) = queue::hand_back(db, &job).await {
                tracing::warn!(error = %error, "security worker: could not hand the job back; its lease will expire");
            }
            None
        }
    };
    let recorded = match result {
        Some(Ok(result)) => queue::succeed(db, &job, &result).await,
        Some(Err(error)) => {
            tracing::warn!(job = %job.id, attempt = job.attempt, error = %error, "security scan failed");
            queue::fail(db, &job, &error, backoff).await
        }
        None => return,
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(job = %job.id, "security scan: result fenced off (the attempt was superseded)"),
        Err(error) => {
            tracing::error!(error = %error, "security scan: could not record the result; its lease will expire")
        }
    }
}

async fn reap(db: PgPool, config: SecurityConfig, shutdown: CancellationToken) {
    let backoff = Duration::from_secs(config.retry_backoff_secs);
    let every = Duration::from_secs(config.lease_secs.max(3) / 3);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        match queue::rescue_expired(&db, backoff).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(rescued = n, "security scans rescued from lost workers"),
            Err(error) => tracing::warn!(error = %error, "security reaper failed"),
        }
        let claim_timeout = Duration::from_secs(config.internal_claim_timeout_secs);
        match queue::fail_unclaimed(&db, claim_timeout, backoff).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(missed = n, "internal security scans not claimed by their devices in time"),
            Err(error) => tracing::warn!(error = %error, "security reaper failed"),
        }
    }
}
