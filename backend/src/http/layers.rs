//! Middleware of the whole API: request ids, tracing, CORS, gzip, timeouts, body limits,
//! panics, a last pass that turns any bare error response into problem+json, and around
//! them all the request metrics.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::{PROBLEM_JSON, Problem, problem_response, problem_type};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::telemetry::{RequestDone, RequestSpan};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Browsers that once reached the service over HTTPS refuse plain HTTP to it for a year.
const HSTS: header::HeaderValue = header::HeaderValue::from_static("max-age=31536000");

/// Sends HSTS, but not to this machine's names: a development service would pin every
/// port of `localhost` to HTTPS in the browser for a year.
async fn hsts(request: Request, next: middleware::Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let local = myscanner_protocol::tls::is_loopback(name);
    let mut response = next.run(request).await;
    if !local {
        response.headers_mut().entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HSTS);
    }
    response
}

pub fn apply(router: Router, config: &ServerConfig, metrics: &Metrics) -> Router {
    let origins: Vec<_> = config.cors_allowed_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_NONE_MATCH, header::ACCEPT])
        .expose_headers([header::RETRY_AFTER, header::ETAG, REQUEST_ID])
        .max_age(Duration::from_secs(3600));

    let router = router.layer(
        ServiceBuilder::new()
            // Outermost: counts the status the client gets (timeouts and panics included)
            // and the whole time; by route template, as routing has run (`Router::layer`).
            .layer(middleware::from_fn_with_state(metrics.clone(), crate::metrics::http::track))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
                header::SEC_WEBSOCKET_PROTOCOL,
            ]))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            // 5xx are logged once, by the error type; the default on_failure would log them again.
            .layer(TraceLayer::new_for_http().make_span_with(RequestSpan).on_response(RequestDone).on_failure(()))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(cors)
            .layer(CompressionLayer::new())
            .layer(middleware::map_response(problem_for_bare_errors))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(config.request_timeout_secs),
            ))
            .layer(CatchPanicLayer::new())
            .layer(DefaultBodyLimit::max(config.body_limit_bytes)),
    );
    // Only when this service itself serves TLS: behind a terminating proxy, HSTS is the
    // proxy's to send.
    if config.tls.is_some() { router.layer(middleware::from_fn(hsts)) } else { router }
}

/// Errors produced outside our handlers (unknown route, wrong method, timeout, body limit,
/// panic) come without a problem document; give them one so that clients see one format.
async fn problem_for_bare_errors<B>(response: Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response.map(axum::body::Body::new);
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "invalid-request",
    };
    let problem = Problem {
        kind: problem_type(code),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: None,
        errors: vec![],
        subscription_status: None,
    };
    let (mut parts, _) = response.into_parts();
    let mut fresh = problem_response(status, &problem);
    // Keep headers such as Allow (405) and Retry-After; the body and its type are ours.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(PROBLEM_JSON));
    std::mem::swap(fresh.headers_mut(), &mut parts.headers);
    fresh
}
