//! The scan queue in PostgreSQL: weekly and run-now jobs, claimed into heartbeat leases,
//! fenced by attempt number, retried with backoff, and logged to `security_scans`.
//!
//! A job's life in three files: `enqueue` puts it in (and withdraws it when its owner
//! disables the scan), `lease` hands it to a worker and takes it back from one that stopped,
//! `outcome` records how the attempt ended and what it found.

mod enqueue;
mod lease;
mod outcome;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use self::enqueue::{RunNow, enqueue_weekly, run_now, withdraw};
pub use self::lease::{claim, claim_many, fail_unclaimed, hand_back, heartbeat, rescue_expired};
pub use self::outcome::{fail, succeed};

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

impl ScanResult {
    /// Whether findings are to be stored: what decides if recording it needs a transaction.
    fn has_findings(&self) -> bool {
        match self {
            ScanResult::External { ports, .. } => !ports.is_empty(),
            ScanResult::Internal { hosts } => !hosts.is_empty(),
        }
    }
}

/// Logs an attempt that did not succeed (`failed`, `lost`, `withdrawn`) in `security_scans`,
/// once per attempt.
pub(super) async fn log_attempt(
    tx: &mut sqlx::PgConnection,
    job_id: Uuid,
    attempt: i32,
    outcome: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO security_scans (id, job_id, workgroup_id, device_id, kind, attempt, outcome, started_at, error)
         SELECT $1, id, workgroup_id, device_id, kind, $3, $4, started_at, $5 FROM security_scan_jobs WHERE id = $2
         ON CONFLICT ON CONSTRAINT security_scans_attempt_key DO NOTHING",
        Uuid::now_v7(),
        job_id,
        attempt,
        outcome,
        error,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
