//! What every handler can reach: the pool, the configuration and the shared per-replica
//! parts (rate limits, remote-control registry, sync hub, remembered callers, metrics), built once
//! from the configuration. Kept apart from [`crate::startup`], which binds, serves and
//! drains: handlers depend on what they can reach, not on how the service starts.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::jwt::JwtKeys;
use crate::auth::rate_limit::RateLimiter;
use crate::broker::management::Management;
use crate::clock::Clock;
use crate::config::Config;
use crate::measurements::ingest::IngestStatus;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub broker: Management,
    pub ingest: IngestStatus,
    pub rate_limit: Arc<RateLimiter>,
    /// Per scanner, apart from people's.
    pub device_rate_limit: Arc<RateLimiter>,
    /// Scanners' long polls in progress.
    pub long_polls: Arc<crate::auth::rate_limit::LongPolls>,
    pub remote: crate::remote::Registry,
    pub sync: crate::sync::Hub,
    /// Trust for the service's own TLS links (replica relays): the platform's roots.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// Exports streaming at once (each holds a database connection while it streams).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Turns at argon2 for sign-ins and password changes.
    pub passwords: Arc<crate::auth::password::Turns>,
    /// What subscriptions and the weekly schedule are judged by.
    pub clock: Clock,
    /// Callers remembered for a second (`auth::cache`).
    pub auth: Arc<crate::auth::cache::AuthCache>,
    /// What this replica counts for Prometheus (`metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl AppState {
    pub fn new(db: PgPool, config: Config, clock: Clock) -> anyhow::Result<Self> {
        let jwt = Arc::new(JwtKeys::new(&config.auth));
        let broker = Management::new(&config.broker)?;
        let metrics = crate::metrics::Metrics::new(config.broker.url.expose());
        let rate_limit =
            Arc::new(RateLimiter::new(config.server.rate_limit_per_minute, config.server.rate_limit_burst));
        let replica_url =
            config.remote.advertise_url.clone().unwrap_or_else(|| format!("http://{}", config.server.listen));
        let remote = crate::remote::Registry::new(db.clone(), &config.remote, replica_url, clock.clone());
        let device_rate_limit = Arc::new(RateLimiter::new(
            config.server.device_rate_limit_per_minute,
            config.server.device_rate_limit_burst,
        ));
        let exports = Arc::new(tokio::sync::Semaphore::new(config.server.max_exports));
        let passwords = Arc::new(crate::auth::password::Turns::new(
            config.auth.password_checks_at_once,
            std::time::Duration::from_millis(config.auth.password_check_wait_ms),
        ));
        Ok(AppState {
            db,
            config: Arc::new(config),
            jwt,
            broker,
            ingest: IngestStatus::default(),
            rate_limit,
            device_rate_limit,
            long_polls: Default::default(),
            remote,
            sync: Default::default(),
            client_tls: myscanner_protocol::tls::platform_client_config(),
            exports,
            passwords,
            clock,
            auth: Default::default(),
            metrics,
        })
    }
}
