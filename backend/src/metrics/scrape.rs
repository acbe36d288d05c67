//! What is read when Prometheus scrapes: states, not events. Each scrape reads them afresh
//! into a registry of its own, after the event counters of [`super::Metrics`].

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::security::queue::ScanKind;
use crate::state::AppState;

/// How long a scrape waits for the broker or the database before it leaves their figures
/// out: well within Prometheus' default scrape timeout (10 s).
const SOURCE_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Jobs {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

/// `GET /metrics`: the Prometheus text format (0.0.4).
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut now = Registry::with_prefix("myscanner");
    now.register("build", "The running version (always 1)", Info::new(Version { version: env!("CARGO_PKG_VERSION") }));
    let sources = Family::<Source, Gauge>::default();
    now.register(
        "metrics_source_up",
        "Whether this scrape could read a source (`broker`: the ingest queue; `database`: the Security Services queue); a source that is down leaves its figures out",
        sources.clone(),
    );

    let (queue, security) = tokio::join!(
        tokio::time::timeout(SOURCE_WAIT, state.metrics.0.queue.depth()),
        tokio::time::timeout(SOURCE_WAIT, security_queue(&state.db)),
    );
    let queue = match queue {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: the ingest queue's depth could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the broker did not answer in time");
            None
        }
    };
    sources.get_or_create(&Source { source: "broker" }).set(i64::from(queue.is_some()));
    if let Some(depth) = queue {
        gauge(
            &mut now,
            "ingest_queue_messages",
            "Messages waiting in the ingest queue for a consumer (the whole queue, shared by every replica): ingest's lag",
            i64::from(depth.ready),
        );
        gauge(
            &mut now,
            "ingest_queue_consumers",
            "Consumers of the ingest queue, over every replica (one per channel)",
            i64::from(depth.consumers),
        );
    }
    if state.config.ingest.enabled {
        gauge(
            &mut now,
            "ingest_consumer_connected",
            "Whether this replica's ingest consumer holds its broker connection (1) or is reconnecting (0)",
            i64::from(state.ingest.connected()),
        );
    }

    let security = match security {
        Ok(Ok(rows)) => Some(rows),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: the Security Services queue could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the database did not answer in time");
            None
        }
    };
    sources.get_or_create(&Source { source: "database" }).set(i64::from(security.is_some()));
    if let Some(rows) = security {
        let jobs = Family::<Jobs, Gauge>::default();
        now.register(
            "security_queue_jobs",
            "Security Services scans waiting (`queued`, retries in backoff included) and `running`, by kind, over every replica",
            jobs.clone(),
        );
        let oldest = Family::<Kind, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        now.register(
            "security_queue_oldest_due_seconds",
            "How long the longest-waiting queued scan has been due (since it was enqueued, or its retry backoff ended), by kind; 0 when none is due",
            oldest.clone(),
        );
        for kind in ScanKind::ALL {
            let row = rows.iter().find(|r| r.kind == kind);
            let name = kind_name(kind);
            jobs.get_or_create(&Jobs { kind: name, state: "queued" }).set(row.map_or(0, |r| r.queued));
            jobs.get_or_create(&Jobs { kind: name, state: "running" }).set(row.map_or(0, |r| r.running));
            oldest.get_or_create(&Kind { kind: name }).set(row.map_or(0.0, |r| r.oldest_due_secs));
        }
    }

    let (tunnels, sessions) = state.remote.open_counts();
    gauge(&mut now, "remote_tunnels_open", "Scanners' remote-control tunnels this replica holds", tunnels as i64);
    gauge(&mut now, "remote_sessions_open", "Users' remote-control sessions this replica serves", sessions as i64);

    let open = Family::<Pool, Gauge>::default();
    now.register("db_pool_connections", "Database connections the pool holds open (idle and in use)", open.clone());
    let idle = Family::<Pool, Gauge>::default();
    now.register("db_pool_idle_connections", "Database connections of the pool waiting for work", idle.clone());
    let max = Family::<Pool, Gauge>::default();
    now.register(
        "db_pool_max_connections",
        "The most connections the pool opens (`api`: database.max_connections; `ingest`: the consumer's own)",
        max.clone(),
    );
    let mut pools = vec![("api", state.db.clone())];
    pools.extend(state.metrics.0.pools.lock().expect("pools lock").iter().cloned());
    for (name, pool) in pools {
        let label = Pool { pool: name };
        open.get_or_create(&label).set(i64::from(pool.size()));
        idle.get_or_create(&label).set(pool.num_idle() as i64);
        max.get_or_create(&label).set(i64::from(pool.options().get_max_connections()));
    }

    let mut body = String::new();
    prometheus_text::encode(&mut body, &state.metrics.0.registry).expect("text into a String");
    prometheus_text::encode(&mut body, &now).expect("text into a String");
    ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], body)
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn kind_name(kind: ScanKind) -> &'static str {
    match kind {
        ScanKind::Internal => "internal",
        ScanKind::External => "external",
    }
}

struct QueueRow {
    kind: ScanKind,
    queued: i64,
    running: i64,
    oldest_due_secs: f64,
}

/// The Security Services queue, per kind of scan (a kind with no job has no row). Reads
/// only waiting and running jobs (`security_scan_jobs_active_key` holds just those).
async fn security_queue(db: &PgPool) -> sqlx::Result<Vec<QueueRow>> {
    sqlx::query_as!(
        QueueRow,
        r#"SELECT kind AS "kind!: ScanKind",
                  count(*) FILTER (WHERE state = 'queued') AS "queued!",
                  count(*) FILTER (WHERE state = 'running') AS "running!",
                  coalesce(extract(epoch FROM now() - min(not_before) FILTER (WHERE state = 'queued' AND not_before <= now())),
                           0)::float8 AS "oldest_due_secs!"
           FROM security_scan_jobs WHERE state IN ('queued', 'running') GROUP BY kind"#
    )
    .fetch_all(db)
    .await
}
