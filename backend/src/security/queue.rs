//! The scan queue in PostgreSQL: weekly and run-now jobs, claimed into heartbeat leases,
//! fenced by attempt number, retried with backoff, and logged to `security_scans`.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ScanKind {
    /// Hosts on the device's local network; run by the device itself.
    Internal,
    /// Ports of the device's network reachable from the internet; run by the service.
    External,
}

impl ScanKind {
    pub const ALL: [ScanKind; 2] = [ScanKind::Internal, ScanKind::External];
}

/// A job a worker holds. Everything it writes names `attempt`: if the lease was lost
/// meanwhile, the write is refused.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub workgroup_id: Uuid,
    pub device_id: Uuid,
    pub kind: ScanKind,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    /// External scans: the device's last observed public address.
    pub target: Option<IpAddr>,
}

/// An open port an external scan verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortFinding {
    pub port: u16,
    #[schema(example = "tcp")]
    pub protocol: String,
    #[schema(example = "open")]
    pub state: String,
    /// A guess from the port number or the banner.
    #[schema(example = "ssh")]
    pub service: Option<String>,
    /// The first bytes the service sent, if any.
    pub banner: Option<String>,
}

/// A host an internal scan found on the device's local network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostFinding {
    #[schema(value_type = String, format = Ipv4, example = "192.0.2.17")]
    pub ip: IpAddr,
    #[schema(example = "00:1b:21:3a:4f:5e", pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")]
    pub mac: Option<String>,
    /// Vendor from the IEEE OUI registry and reverse-DNS name, where known.
    #[schema(
        example = "Intel Corporate (nvr-01.site.local)",
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ScanResult {
    External { target: IpAddr, ports: Vec<PortFinding>, ids_suspected: bool, ids_reasons: Vec<String> },
    Internal { hosts: Vec<HostFinding> },
}

/// Enqueues the weekly scan of every enabled device and kind for `slot` (a Saturday
/// 00:00 UTC). Idempotent: the (device, kind, slot) key and ON CONFLICT DO NOTHING make
/// any number of callers — replicas, restarts, catch-ups — enqueue each job once. A scan
/// already waiting or running (run-now) is not doubled either. Workgroups whose
/// subscription was not available at the slot, or is not now (a catch-up after a
/// cancellation), are skipped; their settings stay.
#[tracing::instrument(skip(db))]
pub async fn enqueue_weekly(db: &PgPool, slot: DateTime<Utc>, now: DateTime<Utc>) -> sqlx::Result<u64> {
    let inserted = sqlx::query(
        "INSERT INTO security_scan_jobs (id, workgroup_id, device_id, kind, origin, scheduled_for)
         SELECT gen_random_uuid(), e.workgroup_id, e.device_id, e.kind, 'weekly', $1
         FROM security_scan_settings e LEFT JOIN subscriptions s ON s.workgroup_id = e.workgroup_id
         WHERE e.enabled AND subscription_available(s, $1) AND subscription_available(s, $2)
         ORDER BY e.device_id, e.kind
         ON CONFLICT DO NOTHING",
    )
    .bind(slot)
    .bind(now)
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
    let (queued, enabled): (bool, bool) = sqlx::query_as(
        "WITH enabled AS (
             SELECT EXISTS (SELECT 1 FROM security_scan_settings WHERE device_id = $3 AND kind = $4 AND enabled) AS yes
         ), queued AS (
             INSERT INTO security_scan_jobs (id, workgroup_id, device_id, kind, origin)
             SELECT $1, $2, $3, $4, 'run_now' FROM enabled WHERE enabled.yes
             ON CONFLICT (device_id, kind) WHERE state IN ('queued', 'running') DO NOTHING
             RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM queued), (SELECT yes FROM enabled)",
    )
    .bind(Uuid::now_v7())
    .bind(workgroup_id)
    .bind(device_id)
    .bind(kind)
    .fetch_one(db)
    .await?;
    Ok(match (queued, enabled) {
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
    let withdrawn: Vec<(Uuid, i32, bool)> = sqlx::query_as(
        "WITH pending AS (
             SELECT id, attempt, state = 'running' AS was_running FROM security_scan_jobs
             WHERE workgroup_id = $1 AND device_id = ANY($2) AND kind = $3 AND state IN ('queued', 'running')
             FOR UPDATE
         ), withdrawn AS (
             UPDATE security_scan_jobs j SET state = 'withdrawn', finished_at = now(), lease_owner = NULL,
                    lease_expires_at = NULL, last_error = $4
             FROM pending WHERE j.id = pending.id
         )
         SELECT id, attempt, was_running FROM pending",
    )
    .bind(workgroup_id)
    .bind(devices)
    .bind(kind)
    .bind(WHY)
    .fetch_all(&mut *tx)
    .await?;
    for (id, attempt, _) in withdrawn.iter().filter(|(_, _, was_running)| *was_running) {
        log_attempt(tx, *id, *attempt, "withdrawn", WHY).await?;
    }
    Ok(withdrawn.len() as u64)
}

#[derive(sqlx::FromRow)]
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
    let mut rows: Vec<ClaimedRow> = sqlx::query_as(
        "WITH next AS (
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
         RETURNING j.id, j.workgroup_id, j.device_id, j.kind, j.attempt, j.started_at, d.public_address AS target,
                   j.queue_position",
    )
    .bind(kind)
    .bind(device_id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_all(db)
    .await?;
    rows.sort_by_key(|r| r.queue_position);
    Ok(rows.into_iter().map(Claimed::from).collect())
}

/// Renews the lease and records progress. `false`: the lease is lost (the attempt was
/// superseded); stop and write nothing.
pub async fn heartbeat(db: &PgPool, job: &Claimed, progress: f32, lease: Duration) -> sqlx::Result<bool> {
    let renewed = sqlx::query(
        "UPDATE security_scan_jobs SET lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(),
                progress = $4
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.attempt)
    .bind(lease.as_secs_f64())
    .bind(progress)
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Records a successful attempt with its findings. `false` if fenced off.
pub async fn succeed(db: &PgPool, job: &Claimed, result: &ScanResult) -> sqlx::Result<bool> {
    let scan_id = Uuid::now_v7();
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
    let has_findings = match result {
        ScanResult::External { ports, .. } => !ports.is_empty(),
        ScanResult::Internal { hosts } => !hosts.is_empty(),
    };
    // A transaction only when findings follow; otherwise the one statement is atomic.
    let mut tx = if has_findings { Some(db.begin().await?) } else { None };
    // Finishing the job and logging the attempt are one statement: the attempt is logged
    // only if this worker still held the job (the fence).
    let done = sqlx::query(
        "WITH done AS (
             UPDATE security_scan_jobs SET state = 'succeeded', finished_at = now(), progress = 1, lease_owner = NULL,
                    lease_expires_at = NULL, last_error = NULL
             WHERE id = $2 AND attempt = $6 AND state = 'running'
             RETURNING id
         )
         INSERT INTO security_scans (id, job_id, workgroup_id, device_id, kind, attempt, outcome, target, started_at,
                                     open_ports, ids_suspected, ids_reasons, hosts_found)
         SELECT $1, $2, $3, $4, $5, $6, 'succeeded', $7, $8, $9, $10, $11, $12 FROM done",
    )
    .bind(scan_id)
    .bind(job.id)
    .bind(job.workgroup_id)
    .bind(job.device_id)
    .bind(job.kind)
    .bind(job.attempt)
    .bind(target)
    .bind(job.started_at)
    .bind(open_ports)
    .bind(ids_suspected)
    .bind(ids_reasons)
    .bind(hosts_found);
    let done = match tx.as_mut() {
        Some(tx) => done.execute(&mut **tx).await?,
        None => done.execute(db).await?,
    };
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let Some(mut tx) = tx else {
        // Nothing found: what the previous scan found is all gone.
        record_changes(db, scan_id).await?;
        return Ok(true);
    };
    match result {
        ScanResult::External { ports, .. } if !ports.is_empty() => {
            sqlx::query(
                "INSERT INTO security_scan_findings (id, scan_id, workgroup_id, device_id, kind, seen_at, port, protocol, state, service, banner)
                 SELECT gen_random_uuid(), $1, $2, $3, 'external', now(), * FROM UNNEST($4::int4[], $5::text[], $6::text[], $7::text[], $8::text[])",
            )
            .bind(scan_id)
            .bind(job.workgroup_id)
            .bind(job.device_id)
            .bind(ports.iter().map(|p| i32::from(p.port)).collect::<Vec<_>>())
            .bind(ports.iter().map(|p| p.protocol.as_str()).collect::<Vec<_>>())
            .bind(ports.iter().map(|p| p.state.as_str()).collect::<Vec<_>>())
            .bind(ports.iter().map(|p| p.service.as_deref()).collect::<Vec<_>>())
            .bind(ports.iter().map(|p| p.banner.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        ScanResult::Internal { hosts } if !hosts.is_empty() => {
            sqlx::query(
                "INSERT INTO security_scan_findings (id, scan_id, workgroup_id, device_id, kind, seen_at, ip, mac, description)
                 SELECT gen_random_uuid(), $1, $2, $3, 'internal', now(), ip, mac::macaddr, description
                 FROM UNNEST($4::inet[], $5::text[], $6::text[]) AS h(ip, mac, description)",
            )
            .bind(scan_id)
            .bind(job.workgroup_id)
            .bind(job.device_id)
            .bind(hosts.iter().map(|h| ipnet::IpNet::from(h.ip)).collect::<Vec<_>>())
            .bind(hosts.iter().map(|h| h.mac.as_deref()).collect::<Vec<_>>())
            .bind(hosts.iter().map(|h| h.description.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        _ => {}
    }
    record_changes(&mut *tx, scan_id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Stores in `security_scans.changes` what `scan_id` found that the previous successful
/// scan of its device and kind did not, and what that one found and this one did not. A
/// host is its address and MAC together; a port its number.
async fn record_changes<'e>(db: impl sqlx::PgExecutor<'e>, scan_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
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
    )
    .bind(scan_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed attempt: the job waits for a retry (backoff doubling from `backoff`),
/// or, with its attempts used up, ends as "Scan failed". `false` if fenced off.
pub async fn fail(db: &PgPool, job: &Claimed, error: &str, backoff: Duration) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let failed = sqlx::query(
        "UPDATE security_scan_jobs
         SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
             not_before = now() + make_interval(secs => $3 * power(2, attempt - 1)),
             lease_owner = NULL, lease_expires_at = NULL, last_error = $4
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.attempt)
    .bind(backoff.as_secs_f64())
    .bind(error)
    .execute(&mut *tx)
    .await?;
    if failed.rows_affected() == 0 {
        return Ok(false);
    }
    log_attempt(&mut tx, job.id, job.attempt, "failed", error).await?;
    tx.commit().await?;
    Ok(true)
}

async fn log_attempt(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    attempt: i32,
    outcome: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO security_scans (id, job_id, workgroup_id, device_id, kind, attempt, outcome, started_at, error)
         SELECT $1, id, workgroup_id, device_id, kind, $3, $4, started_at, $5 FROM security_scan_jobs WHERE id = $2
         ON CONFLICT ON CONSTRAINT security_scans_attempt_key DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(job_id)
    .bind(attempt)
    .bind(outcome)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Gives a running job back without using up its attempt (graceful shutdown).
pub async fn hand_back(db: &PgPool, job: &Claimed) -> sqlx::Result<bool> {
    let returned = sqlx::query(
        "UPDATE security_scan_jobs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,
                lease_expires_at = NULL, progress = NULL, started_at = NULL
         WHERE id = $1 AND attempt = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.attempt)
    .execute(db)
    .await?;
    Ok(returned.rows_affected() == 1)
}

/// Jobs whose worker stopped renewing its lease: the attempt is lost (logged), and the job
/// waits for a retry or ends as failed. Returns how many were rescued.
pub async fn rescue_expired(db: &PgPool, backoff: Duration) -> sqlx::Result<u64> {
    let mut tx = db.begin().await?;
    let lost: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE security_scan_jobs
         SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
             not_before = now() + make_interval(secs => $1 * power(2, attempt - 1)),
             lease_owner = NULL, lease_expires_at = NULL,
             last_error = 'the scan stopped reporting progress (its worker was lost)'
         WHERE id IN (SELECT id FROM security_scan_jobs WHERE state = 'running' AND lease_expires_at < now()
                      FOR UPDATE SKIP LOCKED)
         RETURNING id, attempt",
    )
    .bind(backoff.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    for (id, attempt) in &lost {
        log_attempt(&mut tx, *id, *attempt, "lost", "the scan stopped reporting progress (its worker was lost)")
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
    let missed: Vec<(Uuid, i32)> = sqlx::query_as(
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
    )
    .bind(timeout.as_secs_f64())
    .bind(backoff.as_secs_f64())
    .bind(&error)
    .fetch_all(&mut *tx)
    .await?;
    for (id, attempt) in &missed {
        log_attempt(&mut tx, *id, *attempt, "failed", &error).await?;
    }
    tx.commit().await?;
    Ok(missed.len() as u64)
}
