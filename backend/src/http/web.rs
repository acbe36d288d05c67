//! The web dashboard: the single-page app built from `web/` into `server.web_dir`, served at
//! every path outside `/api`. Its content-hashed assets are cached for a year; `index.html`
//! is revalidated on every load, so a new release reaches browsers at once. A path that is
//! not a file is a page of the app and gets `index.html` (deep links); under `/api` an
//! unknown path stays a problem+json 404.

use std::path::Path;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use super::Error;
use crate::state::AppState;

/// Everything the app loads comes from this origin; no inline script or style, no plugins,
/// no framing. `blob:` workers and images are the 3D viewer's and the exports'.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    font-src 'self'; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";
/// Asset names carry a hash of their content: a changed file is a new name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

pub async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let api = path == "/api" || path.starts_with("/api/");
    if api || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Error::NotFound.into_response();
    }
    let dir = &state.config.server.web_dir;
    let index = dir.join("index.html");
    let asset = path.starts_with("/assets/");
    let mut response = if asset {
        // A missing asset is a 404, never index.html: a browser must not run HTML as script.
        ServeDir::new(dir).oneshot(request).await
    } else if tokio::fs::try_exists(&index).await.unwrap_or(false) {
        ServeDir::new(dir).fallback(ServeFile::new(index)).oneshot(request).await
    } else {
        return not_built(dir);
    }
    .unwrap_or_else(|never| match never {})
    .map(Body::new);

    let cache = if asset && response.status() == StatusCode::OK { IMMUTABLE } else { REVALIDATE };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(headers);
    response
}

fn secure(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
}

/// The page at `/` of a service whose dashboard was not built: how to build it.
fn not_built(dir: &Path) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>MyScanner Cloud</title></head>\
         <body><h1>MyScanner Cloud is running</h1>\
         <p>The web dashboard has not been built, so there is nothing to show here yet. \
         The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>\
         <p>Build the dashboard with <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> \
         (<code>deploy/scripts/run.sh</code> does it for you); this service serves it from \
         <code>{}</code> (<code>server.web_dir</code>).</p></body></html>",
        html_escape(&dir.display().to_string())
    );
    let mut response = Html(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    secure(response.headers_mut());
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
