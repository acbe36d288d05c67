//! Prometheus metrics of this replica: `GET /metrics` in Prometheus' text format, served on
//! a listener of its own (`metrics.listen`), never on the API's port.
//!
//! Two kinds of figures:
//! - **events**, counted where they happen and kept here, in [`Metrics`]: API requests
//!   (`http`: by route template, method and status, with their latency), and what the
//!   ingest consumer stores, ignores as duplicates and rejects (`ingest`), with the time
//!   each batch takes to store;
//! - **states**, read fresh at each scrape (`scrape`): the ingest queue's depth from the
//!   broker, the Security Services queue from the database, the remote-control tunnels and
//!   sessions this replica holds, the database pools. Nothing of them is kept between
//!   scrapes, so nothing goes stale; a source that cannot be read is left out, and says so in
//!   `myscanner_metrics_source_up`.
//!
//! Labels are bounded by construction: routes are the router's templates (never a raw
//! path), statuses the codes the service answers, rejection reasons a fixed set of kinds.
//!
//! `prometheus-client` is the Prometheus project's own Rust client: typed label sets and
//! the text format's escaping and suffixes for a handful of small dependencies, where the
//! `metrics` facade and its exporter would bring an HTTP stack and a tree of their own.

pub mod http;
pub mod ingest;
mod scrape;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::state::AppState;

/// API latency buckets, in seconds: from a cached answer to the request timeout (30 s).
const REQUEST_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Batch store buckets, in seconds: one statement of up to `ingest.batch_size` rows.
const BATCH_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The events of this replica, counted as they happen. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    stored: Counter,
    duplicates: Counter,
    rejections: Family<RejectionLabels, Counter>,
    batch_store_seconds: Histogram,
    store_failures: Counter,
    /// Pools besides the API's (`AppState::db`), added by whoever opens them.
    pools: Mutex<Vec<(&'static str, PgPool)>>,
    /// The broker link that reads the ingest queue's depth at scrape time.
    queue: ingest::QueueProbe,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    route: String,
    /// `2xx`, `4xx`…: the class keeps the histogram's series few.
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    reason: &'static str,
}

impl Metrics {
    /// Counters start at zero; `broker_url` is where the ingest queue's depth is read.
    pub fn new(broker_url: &str) -> Self {
        let mut registry = Registry::with_prefix("myscanner");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests answered, by method, route template (`unmatched`: an unknown API path; `web`: the dashboard) and status code",
            requests.clone(),
        );
        let request_seconds: Family<LatencyLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by method, route template and status class",
            request_seconds.clone(),
        );
        let stored = Counter::default();
        registry.register("ingest_measurements_stored", "Measurements the ingest consumer stored", stored.clone());
        let duplicates = Counter::default();
        registry.register(
            "ingest_duplicates",
            "Measurements received again (a redelivery or a device's resend) and ignored: already stored",
            duplicates.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "ingest_rejections",
            "Messages that can never be stored, recorded and dead-lettered, by kind of reason",
            rejections.clone(),
        );
        let batch_store_seconds = Histogram::new(BATCH_BUCKETS);
        registry.register(
            "ingest_batch_store_duration_seconds",
            "Time to store one batch of measurements and rejections (one transaction), for each batch stored",
            batch_store_seconds.clone(),
        );
        let store_failures = Counter::default();
        registry.register(
            "ingest_batch_store_failures",
            "Batch stores that failed on a transient database error; the batch is retried, nothing is acked meanwhile",
            store_failures.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            requests,
            request_seconds,
            stored,
            duplicates,
            rejections,
            batch_store_seconds,
            store_failures,
            pools: Mutex::default(),
            queue: ingest::QueueProbe::new(broker_url),
        }))
    }

    /// One API request answered.
    pub fn request(&self, method: &'static str, route: String, status: StatusCode, took: Duration) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let latency = LatencyLabels { method, route: route.clone(), status_class: class };
        self.0.request_seconds.get_or_create(&latency).observe(took.as_secs_f64());
        self.0.requests.get_or_create(&RequestLabels { method, route, status: status.as_u16() }).inc();
    }

    /// Of `offered` measurements, `new` were stored; the rest were there already.
    pub fn ingest_stored(&self, offered: usize, new: u64) {
        self.0.stored.inc_by(new);
        self.0.duplicates.inc_by((offered as u64).saturating_sub(new));
    }

    /// A message rejected for `reason` (counted by its kind, [`ingest::rejection_kind`]).
    pub fn ingest_rejected(&self, reason: &str) {
        self.0.rejections.get_or_create(&RejectionLabels { reason: ingest::rejection_kind(reason) }).inc();
    }

    /// One attempt to store a batch: its time when it succeeded, a failure when it did not.
    pub fn ingest_batch_store(&self, took: Duration, succeeded: bool) {
        match succeeded {
            true => self.0.batch_store_seconds.observe(took.as_secs_f64()),
            false => {
                self.0.store_failures.inc();
            }
        }
    }

    /// Reports the use of another of this replica's pools (`AppState::db` is `api`).
    pub fn watch_pool(&self, name: &'static str, pool: PgPool) {
        self.0.pools.lock().expect("pools lock").push((name, pool));
    }
}

/// The metrics listener's one route.
pub fn router(state: AppState) -> Router {
    Router::new().route("/metrics", axum::routing::get(scrape::metrics)).with_state(state)
}

/// Serves `/metrics` on `listener` until `stopped` completes.
pub async fn serve(listener: TcpListener, state: AppState, stopped: impl Future<Output = ()> + Send + 'static) {
    let metrics = state.metrics.clone();
    if let Err(error) = axum::serve(listener, router(state)).with_graceful_shutdown(stopped).await {
        tracing::error!(%error, "metrics listener stopped");
    }
    metrics.0.queue.close().await;
}
