//! Leases: a worker (or a device, for internal scans) claims a job for a while and keeps
//! it by heartbeats; jobs whose holder stopped, or that no device claimed, go back to the
//! queue or end as failed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Claimed, ScanKind, log_attempt};

struct ClaimedRow {
    id: Uuid,
    workgroup_id: Uuid,
    device_id: Uuid,
    kind: ScanKind,
    attempt: i32,
    started_at: DateTime<Utc>,
    target: Option<ipnet::IpNet>,
    queue_position: i64,
}

impl From<ClaimedRow> for Claimed {
    fn from(r: ClaimedRow) -> Self {
        Claimed {
            id: r.id,
            workgroup_id: r.workgroup_id,
            device_id: r.device_id,
            kind: r.kind,
            attempt: r.attempt,
            started_at: r.started_at,
            target: r.target.map(|net| net.addr()),
        }
    }
}

/// Claims the next queued job of `kind` (for `device_id` only, if given) into a lease.
pub async fn claim(
    db: &PgPool,
    kind: ScanKind,
    device_id: Option<Uuid>,
    worker: &str,
    lease: Duration,
) -> sqlx::Result<Option<Claimed>> {
    Ok(claim_many(db, kind, device_id, worker, lease, 1).await?.pop())
}

/// Claims up to `n` queued jobs at once, oldest first, each into its own lease: what a
/// worker pool with `n` free slots asks for in one round trip. A disabled scan is never
/// claimed because disabling withdraws its jobs in the same transaction ([`withdraw`]
/// locks them, so a claim skips or precedes it; one it precedes is fenced off): the queue
/// holds only enabled scans, and the claim needs no look at the settings (which cost half
/// the claim rate when it had one).
pub async fn claim_many(
    db: &PgPool,
    kind: ScanKind,
    device_id: Option<Uuid>,
    worker: &str,
    lease: Duration,
    n: usize,
) -> sqlx::Result<Vec<Claimed>> {
    let mut rows = sqlx::query_as!(
        ClaimedRow,
        r#"WITH next AS (
             SELECT id FROM security_scan_jobs
             WHERE state = 'queued' AND kind = $1 AND not_before <= now() AND ($2::uuid IS NULL OR device_id = $2)
             ORDER BY queue_position
             FOR UPDATE SKIP LOCKED
             LIMIT $5
         )
         UPDATE security_scan_jobs j
         SET state = 'running', attempt = attempt + 1, lease_owner = $3,
             lease_expires_at = now() + make_interval(secs => $4), heartbeat_at = now(), progress = 0,
             started_at = now()
         FROM next, devices d
         WHERE j.id = next.id AND d.id = j.device_id
         RETURNING j.id, j.workgroup_id, j.device_id, j.kind AS "kind: ScanKind", j.attempt,
                   j.started_at AS "started_at!", d.public_address AS target, j.queue_position"#,
        kind as _,
        device_id,
        worker,
        lease.as_secs_f64(),
        i64::try_from(n).unwrap_or(i64::MAX),
    )
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|r| r.queue_position);
    Ok(rows.into_iter().map(Claimed::from).collect())
}

/// Renews the lease and records progress. `false`: the lease is lost (the attempt was
/// superseded); stop and write nothing.
pub async fn heartbeat(db: &PgPool, job: &Claimed, progress: f32, lease: Duration) -> sqlx::Result<bool> {
    let renewed = sqlx::query!(
        "UPDATE security_scan_jobs SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(),
                progress = $4
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
        job.id,
        job.attempt,
        lease.as_secs_f64(),
        progress,
    )
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Gives a running job back without using up its attempt (graceful shutdown).
pub async fn hand_back(db: &PgPool, job: &Claimed) -> sqlx::Result<bool> {
    let returned = sqlx::query!(
        "UPDATE security_scan_jobs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,
                lease_expires_at = NULL, progress = NULL, started_at = NULL
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
        job.id,
        job.attempt,
    )
    .execute(db)
    .await?;
    Ok(returned.rows_affected() == 1)
}

/// Jobs whose worker stopped renewing its lease: the attempt is lost (logged), and the job
/// waits for a retry or ends as failed. Returns how many were rescued.
pub async fn rescue_expired(db: &PgPool, backoff: Duration) -> sqlx::Result<u64> {
    let mut tx = db.begin().await?;
    let lost = sqlx::query!(
        "UPDATE security_scan_jobs
         SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
             not_before = now() + make_interval(secs => $1 * power(2, attempt - 1)),
             lease_owner = NULL, lease_expires_at = NULL,
             last_error = 'the scan stopped reporting progress (its worker was lost)'
         WHERE id IN (SELECT id FROM security_scan_jobs WHERE state = 'running' AND lease_expires_at < now()
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, attempt",
        backoff.as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    for job in &lost {
        log_attempt(&mut tx, job.id, job.attempt, "lost", "the scan stopped reporting progress (its worker was lost)")
            .await?;
    }
    tx.commit().await?;
    Ok(lost.len() as u64)
}

/// Internal scans waiting longer than `timeout` for their device to claim them: the
/// attempt counts as failed (the device is offline or its agent too old), and the job
/// waits for a retry or ends as failed.
pub async fn fail_unclaimed(db: &PgPool, timeout: Duration, backoff: Duration) -> sqlx::Result<u64> {
    let mut tx = db.begin().await?;
    let error = format!("the device did not claim the scan within {} s", timeout.as_secs());
    let missed = sqlx::query!(
        "UPDATE security_scan_jobs
         SET attempt = attempt + 1,
             state = CASE WHEN attempt + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempt + 1 >= max_attempts THEN now() END,
             not_before = now() + make_interval(secs => $2 * power(2, attempt)),
             last_error = $3
         WHERE id IN (SELECT id FROM security_scan_jobs
                      WHERE state = 'queued' AND kind = 'internal' AND not_before < now() - make_interval(secs => $1)
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, attempt",
        timeout.as_secs_f64(),
        backoff.as_secs_f64(),
        error,
    )
    .fetch_all(&mut *tx)
    .await?;
    for job in &missed {
        log_attempt(&mut tx, job.id, job.attempt, "failed", &error).await?;
    }
    tx.commit().await?;
    Ok(missed.len() as u64)
}
