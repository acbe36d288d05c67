//! How an attempt ended: a success with its findings and what changed since the previous
//! scan, or a failure that waits for a retry.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{Claimed, ScanResult, log_attempt};

/// Records a successful attempt with its findings. `false` if fenced off.
pub async fn succeed(db: &PgPool, job: &Claimed, result: &ScanResult) -> sqlx::Result<bool> {
    let scan_id = Uuid::now_v7();
    // A transaction only when findings follow; otherwise the one statement is atomic.
    if !result.has_findings() {
        if !finish(db, job, scan_id, result).await? {
            return Ok(false);
        }
        // Nothing found: what the previous scan found is all gone.
        record_changes(db, scan_id).await?;
        return Ok(true);
    }
    let mut tx = db.begin().await?;
    if !finish(&mut *tx, job, scan_id, result).await? {
        return Ok(false);
    }
    store_findings(&mut tx, job, scan_id, result).await?;
    record_changes(&mut *tx, scan_id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks the job succeeded and logs the attempt as `scan_id` with its summary, in one
/// statement: the attempt is logged only if this worker still held the job (the fence).
/// `false` if it did not.
async fn finish<'e>(
    db: impl sqlx::PgExecutor<'e>,
    job: &Claimed,
    scan_id: Uuid,
    result: &ScanResult,
) -> sqlx::Result<bool> {
    let (target, open_ports, ids_suspected, ids_reasons, hosts_found) = match result {
        ScanResult::External { target, ports, ids_suspected, ids_reasons } => (
            Some(ipnet::IpNet::from(*target)),
            Some(ports.len() as i32),
            Some(*ids_suspected),
            Some(ids_reasons.clone()),
            None,
        ),
        ScanResult::Internal { hosts } => (None, None, None, None, Some(hosts.len() as i32)),
    };
    let done = sqlx::query!(
        "WITH done AS (
             UPDATE security_scan_jobs SET state = 'succeeded', finished_at = now(), progress = 1, lease_owner = NULL,
                    lease_expires_at = NULL, last_error = NULL
             WHERE id = $2 AND attempt = $6 AND state = 'running'
             RETURNING id
         )
         INSERT INTO security_scans (id, job_id, workgroup_id, device_id, kind, attempt, outcome, target, started_at,
                                     open_ports, ids_suspected, ids_reasons, hosts_found)
         SELECT $1, $2, $3, $4, $5, $6, 'succeeded', $7, $8, $9, $10, $11, $12 FROM done",
        scan_id,
        job.id,
        job.workgroup_id,
        job.device_id,
        job.kind as _,
        job.attempt,
        target,
        job.started_at,
        open_ports,
        ids_suspected,
        ids_reasons.as_deref(),
        hosts_found,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Stores what scan `scan_id` found: its open ports (external) or hosts (internal). Called
/// only when it found something, inside the transaction that finished the job.
async fn store_findings(
    tx: &mut sqlx::PgConnection,
    job: &Claimed,
    scan_id: Uuid,
    result: &ScanResult,
) -> sqlx::Result<()> {
    // The macros check a text array as `&[String]`; these borrow their text and hold nulls,
    // so they are bound as they are (`as _`).
    match result {
        ScanResult::External { ports, .. } => {
            sqlx::query!(
                "INSERT INTO security_scan_findings (id, scan_id, workgroup_id, device_id, kind, seen_at, port, protocol, state, service, banner)
                 SELECT gen_random_uuid(), $1, $2, $3, 'external', now(), * FROM UNNEST($4::int4[], $5::text[], $6::text[], $7::text[], $8::text[])",
                scan_id,
                job.workgroup_id,
                job.device_id,
                &ports.iter().map(|p| i32::from(p.port)).collect::<Vec<_>>(),
                ports.iter().map(|p| p.protocol.as_str()).collect::<Vec<_>>() as _,
                ports.iter().map(|p| p.state.as_str()).collect::<Vec<_>>() as _,
                ports.iter().map(|p| p.service.as_deref()).collect::<Vec<_>>() as _,
                ports.iter().map(|p| p.banner.as_deref()).collect::<Vec<_>>() as _,
            )
            .execute(&mut *tx)
            .await?;
        }
        ScanResult::Internal { hosts } => {
            sqlx::query!(
                "INSERT INTO security_scan_findings (id, scan_id, workgroup_id, device_id, kind, seen_at, ip, mac, description)
                 SELECT gen_random_uuid(), $1, $2, $3, 'internal', now(), ip, mac::macaddr, description
                 FROM UNNEST($4::inet[], $5::text[], $6::text[]) AS h(ip, mac, description)",
                scan_id,
                job.workgroup_id,
                job.device_id,
                &hosts.iter().map(|h| ipnet::IpNet::from(h.ip)).collect::<Vec<_>>(),
                hosts.iter().map(|h| h.mac.as_deref()).collect::<Vec<_>>() as _,
                hosts.iter().map(|h| h.description.as_deref()).collect::<Vec<_>>() as _,
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Stores in `security_scans.changes` what `scan_id` found that the previous successful
/// scan of its device and kind did not, and what that one found and this one did not. A
/// host is its address and MAC together; a port its number.
async fn record_changes<'e>(db: impl sqlx::PgExecutor<'e>, scan_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH this AS (SELECT id, device_id, kind, finished_at FROM security_scans WHERE id = $1),
         prev AS (
             SELECT s.id FROM security_scans s, this
             WHERE s.device_id = this.device_id AND s.kind = this.kind AND s.outcome = 'succeeded' AND s.id <> this.id
               AND s.finished_at <= this.finished_at
             ORDER BY s.finished_at DESC, s.id DESC LIMIT 1
         ),
         now_found AS (SELECT port, host(ip) AS ip, mac::text AS mac FROM security_scan_findings WHERE scan_id = $1),
         was_found AS (SELECT f.port, host(f.ip) AS ip, f.mac::text AS mac FROM security_scan_findings f JOIN prev ON f.scan_id = prev.id)
         UPDATE security_scans SET changes = jsonb_build_object(
             'previous_scan_id', (SELECT id FROM prev),
             'new_ports', (SELECT coalesce(jsonb_agg(port ORDER BY port), '[]')
                           FROM (SELECT port FROM now_found WHERE port IS NOT NULL EXCEPT SELECT port FROM was_found) p),
             'gone_ports', (SELECT coalesce(jsonb_agg(port ORDER BY port), '[]')
                            FROM (SELECT port FROM was_found WHERE port IS NOT NULL EXCEPT SELECT port FROM now_found) p),
             'new_hosts', (SELECT coalesce(jsonb_agg(jsonb_build_object('ip', ip, 'mac', mac) ORDER BY ip), '[]')
                           FROM (SELECT ip, mac FROM now_found WHERE ip IS NOT NULL EXCEPT SELECT ip, mac FROM was_found) h),
             'gone_hosts', (SELECT coalesce(jsonb_agg(jsonb_build_object('ip', ip, 'mac', mac) ORDER BY ip), '[]')
                            FROM (SELECT ip, mac FROM was_found WHERE ip IS NOT NULL EXCEPT SELECT ip, mac FROM now_found) h))
         WHERE id = $1 AND EXISTS (SELECT 1 FROM prev)",
        scan_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed attempt: the job waits for a retry (backoff doubling from `backoff`),
/// or, with its attempts used up, ends as "Scan failed". `false` if fenced off.
pub async fn fail(db: &PgPool, job: &Claimed, error: &str, backoff: Duration) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let failed = sqlx::query!(
        "UPDATE security_scan_jobs
         SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
             not_before = now() + make_interval(secs => $3 * power(2, attempt - 1)),
             lease_owner = NULL, lease_expires_at = NULL, last_error = $4
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
        job.id,
        job.attempt,
        backoff.as_secs_f64(),
        error,
    )
    .execute(&mut *tx)
    .await?;
    if failed.rows_affected() == 0 {
        return Ok(false);
    }
    log_attempt(&mut tx, job.id, job.attempt, "failed", error).await?;
    tx.commit().await?;
    Ok(true)
}
