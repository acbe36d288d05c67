//! The agent's part in Security Services: it waits for its device's internal scans (long
//! poll), runs each while heartbeating, and reports the hosts found or why it failed.

use std::time::Duration;

use myscanner_protocol::tls;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, InternalScanJob};
use crate::backoff::Backoff;
use crate::network_scan;

/// Subnets with more addresses are not swept.
pub const MAX_HOSTS: u32 = 1024;

pub async fn run(api: Api, allowed: Vec<ipnet::Ipv4Net>, shutdown: CancellationToken) {
    let mut backoff = Backoff::cloud();
    loop {
        let claimed = tokio::select! {
            () = shutdown.cancelled() => return,
            claimed = api.claim_internal_scan(Duration::from_secs(25)) => claimed,
        };
        match claimed {
            Ok(Some(job)) => {
                backoff.succeeded();
                scan(&api, job, &allowed, &shutdown).await;
            }
            Ok(None) => backoff.succeeded(),
            Err(error) => {
                tracing::warn!(error = tls::describe(&error), "internal scans: claim failed");
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        }
    }
}

async fn scan(api: &Api, job: InternalScanJob, allowed: &[ipnet::Ipv4Net], shutdown: &CancellationToken) {
    tracing::info!(job = %job.job_id, attempt = job.attempt, "internal scan started");
    let heartbeats = async {
        loop {
            tokio::time::sleep(Duration::from_secs(job.lease_secs.max(3) / 3)).await;
            match api.scan_heartbeat(&job, 0.5).await {
                Ok(true) => {}
                Ok(false) => return, // superseded: stop
                Err(error) => tracing::warn!(error = %error, "internal scan: heartbeat failed"),
            }
        }
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => return, // the lease expires and the scan is retried
        () = heartbeats => return,
        outcome = network_scan::discover(MAX_HOSTS, allowed) => outcome,
    };
    let reported = match outcome {
        Ok(hosts) => api.scan_report(&job, Some(hosts), None).await,
        Err(error) => api.scan_report(&job, None, Some(error.to_string())).await,
    };
    match reported {
        Ok(true) => tracing::info!(job = %job.job_id, "internal scan reported"),
        Ok(false) => tracing::warn!(job = %job.job_id, "internal scan superseded before its report"),
        Err(error) => tracing::warn!(error = %error, "internal scan: report failed; the scan will be retried"),
    }
}
