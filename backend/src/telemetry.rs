//! Logging and request tracing, in one place.
//!
//! Field names are fixed so logs can be searched: `http.method`, `http.route` (the matched
//! route, never the raw path with ids), `http.status`, `request_id`, `duration_ms`,
//! `device.id`, `user.id`, `workgroup.id`. Secrets never reach a log.

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use std::time::Duration;
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; `RUST_LOG`, when set, wins over the configured filter.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests start many apps in one process) is not an error.
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The span of one request, named by its matched route.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::info_span!(
            "request",
            otel.name = %format_args!("{} {}", request.method(), route),
            http.method = %request.method(),
            http.route = route,
            request_id,
            http.status = tracing::field::Empty,
            user.id = tracing::field::Empty,
            device.id = tracing::field::Empty,
        )
    }
}

/// One line per finished request, with its status and duration.
#[derive(Clone, Copy, Debug)]
pub struct RequestDone;

impl<B> OnResponse<B> for RequestDone {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        span.record("http.status", response.status().as_u16());
        tracing::info!(duration_ms = latency.as_millis() as u64, status = response.status().as_u16(), "finished");
    }
}
