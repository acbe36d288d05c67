//! Putting scans in the queue — weekly for every enabled scan, or now on request — and
//! taking them out when their owner disables them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{ScanKind, log_attempt};

/// Enqueues the weekly scan of every enabled device and kind for `slot` (a Saturday
/// 00:00 UTC). Idempotent: the (device, kind, slot) key and ON CONFLICT DO NOTHING make
/// any number of callers — replicas, restarts, catch-ups — enqueue each job once. A scan
/// already waiting or running (run-now) is not doubled either. Workgroups whose
/// subscription was not available at the slot, or is not now (a catch-up after a
/// cancellation), are skipped; their settings stay.
#[tracing::instrument(skip(db))]
pub async fn enqueue_weekly(db: &PgPool, slot: DateTime<Utc>, now: DateTime<Utc>) -> sqlx::Result<u64> {
    let inserted = sqlx::query!(
        "INSERT INTO security_scan_jobs (id, workgroup_id, device_id, kind, origin, scheduled_for)
         SELECT gen_random_uuid(), e.workgroup_id, e.device_id, e.kind, 'weekly', $1
         FROM security_scan_settings e LEFT JOIN subscriptions s ON s.workgroup_id = e.workgroup_id
         WHERE e.enabled AND subscription_available(s, $1) AND subscription_available(s, $2)
         ORDER BY e.device_id, e.kind
         ON CONFLICT DO NOTHING",
        slot,
        now,
    )
    .execute(db)
    .await?;
    Ok(inserted.rows_affected())
}

/// What asking to run a scan now came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNow {
    /// At the back of the queue.
    Queued,
    /// That device's scan of that kind is already waiting or running.
    AlreadyScheduled,
    /// Its owner has not enabled it: it does not run, now or weekly.
    Disabled,
}

/// Enqueues a run-now scan at the back of the queue, if the scan is enabled and not already
/// waiting or running (the partial unique index decides, so two clicks at once cannot both
/// succeed).
pub async fn run_now(db: &PgPool, workgroup_id: Uuid, device_id: Uuid, kind: ScanKind) -> sqlx::Result<RunNow> {
    let run = sqlx::query!(
        r#"WITH enabled AS (
             SELECT EXISTS (SELECT 1 FROM security_scan_settings WHERE device_id = $3 AND kind = $4 AND enabled) AS yes
         ), queued AS (
             INSERT INTO security_scan_jobs (id, workgroup_id, device_id, kind, origin)
             SELECT $1, $2, $3, $4, 'run_now' FROM enabled WHERE enabled.yes
             ON CONFLICT (device_id, kind) WHERE state IN ('queued', 'running') DO NOTHING
             RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM queued) AS "queued!", (SELECT yes FROM enabled) AS "enabled!""#,
        Uuid::now_v7(),
        workgroup_id,
        device_id,
        kind as _,
    )
    .fetch_one(db)
    .await?;
    Ok(match (run.queued, run.enabled) {
        (true, _) => RunNow::Queued,
        (false, true) => RunNow::AlreadyScheduled,
        (false, false) => RunNow::Disabled,
    })
}

/// Withdraws the scans of `kind` on `devices` that wait or run, because their owner
/// disabled them: a waiting job never runs, and a running attempt is fenced off (its
/// worker's next heartbeat or report finds the job no longer running) and logged as
/// withdrawn.
pub async fn withdraw(
    tx: &mut sqlx::PgConnection,
    workgroup_id: Uuid,
    devices: &[Uuid],
    kind: ScanKind,
) -> sqlx::Result<u64> {
    const WHY: &str = "the scan was disabled";
    let withdrawn = sqlx::query!(
        r#"WITH pending AS (
             SELECT id, attempt, state = 'running' AS was_running FROM security_scan_jobs
             WHERE workgroup_id = $1 AND device_id = ANY($2) AND kind = $3 AND state IN ('queued', 'running')
             FOR UPDATE
         ), withdrawn AS (
             UPDATE security_scan_jobs j SET state = 'withdrawn', finished_at = now(), lease_owner = NULL,
                    lease_expires_at = NULL, last_error = $4
             FROM pending WHERE j.id = pending.id
         )
         SELECT id, attempt, was_running AS "was_running!" FROM pending"#,
        workgroup_id,
        devices,
        kind as _,
        WHY,
    )
    .fetch_all(&mut *tx)
    .await?;
    for job in withdrawn.iter().filter(|job| job.was_running) {
        log_attempt(tx, job.id, job.attempt, "withdrawn", WHY).await?;
    }
    Ok(withdrawn.len() as u64)
}
