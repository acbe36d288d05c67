//! The startup seam: `Application::build(config)` connects, migrates and binds (port 0 in
//! tests) the API's listener and the metrics' own; `run_until(shutdown)` serves (and runs
//! the ingest consumer) until the shutdown future fires, then drains both.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::db;
use crate::http::listener::{PlainListener, TlsListener};
use crate::http::tls::Certificate;
use crate::http::{layers, router, web};
use crate::measurements::ingest::Consumer;
// `Application::state()` hands it out: callers outside the crate may name it from here.
pub use crate::state::AppState;

/// The ingest consumer's own database connections: it looks up the next batch's devices
/// while the previous batch commits.
const INGEST_CONNECTIONS: u32 = 2;

/// The complete HTTP application: every route with its middleware.
pub fn app(state: AppState) -> Router {
    let (routes, _) = router::routes().split_for_parts();
    // Paths outside the API are the web dashboard's; unknown API paths stay 404s.
    let routes = routes.fallback(web::serve).with_state(state.clone());
    layers::apply(routes, &state.config.server, &state.metrics)
}

pub struct Application {
    listener: TcpListener,
    /// `/metrics`, apart from the API (`metrics.listen`), unless `metrics.enabled` is off.
    metrics_listener: Option<TcpListener>,
    /// The certificate served when `server.tls` is set.
    certificate: Option<Arc<Certificate>>,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::default()).await
    }

    /// Built with a clock the caller controls (tests walk subscriptions through time).
    pub async fn build_with_clock(mut config: Config, clock: Clock) -> anyhow::Result<Self> {
        let certificate = config.server.tls.as_ref().map(Certificate::load).transpose()?;
        let db = db::connect(&config.database).await?;
        db::migrate(&db).await?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let metrics_listener = match config.metrics.enabled {
            false => None,
            true => Some(TcpListener::bind(config.metrics.listen).await.with_context(|| {
                format!("cannot listen on {} (metrics.listen; or metrics.enabled = false)", config.metrics.listen)
            })?),
        };
        // Other replicas reach this one where it actually listens (port 0 picks one).
        if config.remote.advertise_url.is_none() {
            let mut address = listener.local_addr()?;
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if certificate.is_some() { "https" } else { "http" };
            config.remote.advertise_url = Some(format!("{scheme}://{address}"));
        }
        Ok(Application { listener, metrics_listener, certificate, state: AppState::new(db, config, clock)? })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; in-flight requests then finish (each bounded by
    /// the request timeout) before this returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // The ingest consumer stops with the same token and drains its batch. It has database
        // connections of its own: no burst of API requests can make it wait for one.
        let ingest = match self.state.config.ingest.enabled {
            false => None,
            true => {
                let config = &self.state.config;
                let db = db::connect_pool(&config.database, INGEST_CONNECTIONS).await?;
                self.state.metrics.watch_pool("ingest", db.clone());
                let consumer = Consumer::new(
                    db,
                    &config.broker,
                    config.ingest.clone(),
                    self.state.ingest.clone(),
                    self.state.metrics.clone(),
                );
                Some(tokio::spawn(consumer.run(cancel.clone())))
            }
        };
        // Security Services: the Saturday scheduler and the external-scan workers.
        let config = &self.state.config;
        let scheduler = config.security.scheduler.then(|| {
            let (db, clock, cancel) = (self.state.db.clone(), self.state.clock.clone(), cancel.clone());
            tokio::spawn(async move {
                if let Err(error) = crate::security::schedule::run(db, clock, cancel).await {
                    tracing::error!(error = %error, "weekly security scheduler stopped");
                }
            })
        });
        let workers =
            tokio::spawn(crate::security::worker::run(self.state.db.clone(), config.security.clone(), cancel.clone()));
        // Remote control: the registry's heartbeats and notifications.
        let remote = tokio::spawn(self.state.remote.clone().run());
        // Sync: wakes long polls when any replica commits a change.
        let sync = tokio::spawn(self.state.sync.clone().run(self.state.db.clone(), cancel.clone()));
        tracing::info!(address = %self.local_addr(), tls = self.certificate.is_some(), "listening");
        // Metrics: on their own listener, never the API's.
        let metrics = self.metrics_listener.map(|listener| {
            tracing::info!(address = %listener.local_addr().expect("bound"), "metrics listening");
            tokio::spawn(crate::metrics::serve(listener, self.state.clone(), cancel.clone().cancelled_owned()))
        });
        let service = app(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let stopped = cancel.clone().cancelled_owned();
        // `tap_io` lends the listeners axum's client-address plumbing.
        match self.certificate {
            None => {
                let listener = PlainListener(self.listener).tap_io(|_| ());
                axum::serve(listener, service).with_graceful_shutdown(stopped).await?
            }
            Some(certificate) => {
                tokio::spawn(certificate.clone().watch(cancel.clone()));
                let listener = TlsListener::new(self.listener, certificate.acceptor()).tap_io(|_| ());
                axum::serve(listener, service).with_graceful_shutdown(stopped).await?
            }
        }
        // Upgraded connections outlive the server: tunnels and sessions end here, recorded.
        self.state.remote.shutdown().await;
        remote.await?;
        sync.await?;
        if let Some(metrics) = metrics {
            metrics.await?;
        }
        if let Some(ingest) = ingest {
            ingest.await?;
        }
        if let Some(scheduler) = scheduler {
            scheduler.await?;
        }
        workers.await?;
        self.state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
