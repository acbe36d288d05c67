//! Liveness and readiness, for load balancers and orchestrators.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{Error, Json, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is alive. Checks nothing else, so a database outage does not get the
/// service restarted in a loop.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The service can do its work: the database answers, and the ingest consumer (where this
/// process runs one) holds its broker connection.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health),
        (status = 503, description = "A dependency is unreachable")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>> {
    let ping =
        tokio::time::timeout(std::time::Duration::from_secs(2), sqlx::query!("SELECT 1 AS alive").fetch_one(&state.db));
    if !matches!(ping.await, Ok(Ok(_))) {
        return Err(Error::Unavailable("database unreachable".into()));
    }
    if state.config.ingest.enabled && !state.ingest.connected() {
        return Err(Error::Unavailable("ingest consumer not connected to the broker".into()));
    }
    Ok(Json(Health { status: "ready" }))
}
