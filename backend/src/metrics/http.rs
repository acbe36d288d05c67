//! API requests by route, method and status: the outermost middleware, so that it sees the
//! status the client gets (timeouts, panics and refusals included) and the whole time.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::Metrics;

/// Counts and times each request. Applied with `Router::layer`, so it runs after routing
/// and finds the route's template (`MatchedPath`) in the request.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method(request.method());
    let route = route(&request);
    let response = next.run(request).await;
    metrics.request(method, route, response.status(), started.elapsed());
    response
}

/// The route's template (`/api/v1/workgroups/{workgroup_id}/measurements`), never the path
/// itself: ids would make a series per workgroup. Requests that matched no route get one of
/// two fixed labels: `unmatched` under `/api`, `web` (the dashboard's files and pages)
/// elsewhere.
pub fn route(request: &Request) -> String {
    match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        None => {
            let path = request.uri().path();
            let api = path == "/api" || path.starts_with("/api/");
            if api { "unmatched" } else { "web" }.to_owned()
        }
    }
}

/// The methods the API knows, and `other` for any a client invents.
pub fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Request {
        Request::builder().uri(path).body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn unmatched_requests_get_a_fixed_label_whatever_their_path() {
        let unknown = route(&request("/api/v1/workgroups/0192d9a0-0000-7000-8000-000000000000/nothing"));
        assert_eq!(unknown, "unmatched");
        assert_eq!(route(&request("/api")), "unmatched");
        assert_eq!(route(&request("/devices/0192d9a0-0000-7000-8000-000000000000")), "web");
        assert_eq!(route(&request("/apiary")), "web", "only /api and what is under it is the API");
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method(&Method::GET), "GET");
        assert_eq!(method(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
