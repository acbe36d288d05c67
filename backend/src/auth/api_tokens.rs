//! Read-only API tokens for customer integrations, one workgroup each. The secret is shown
//! once, at creation; afterwards only its SHA-256 exists.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::Permission;
use super::principal::{Caller, CurrentUser};
use super::secret::{self, API_TOKEN_PREFIX};
use crate::http::fields::Name;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result, Validator};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub workgroup_id: Uuid,
    pub name: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set once revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub name: Name,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub token: ApiToken,
    /// The bearer secret. Shown only in this response: store it now.
    pub secret: String,
}

/// A checked statement reading [`ApiToken`]s: `before` + the columns + `after`.
macro_rules! query_tokens {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ApiToken,
            $before + "id, workgroup_id, name, created_by, created_at, last_used_at, revoked_at" + $after
            $(, $arg)*
        )
    };
}

/// List the workgroup's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/api-tokens", tag = "api-tokens",
    params(("workgroup_id" = Uuid, Path), PageParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<ApiToken>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<ApiToken>>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let limit = page.limit()?;
    let rows = query_tokens!(
        "SELECT ",
        " FROM api_tokens WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
        workgroup_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id)))
}

/// Create an API token; the response holds its secret, once.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/api-tokens", tag = "api-tokens",
    params(("workgroup_id" = Uuid, Path)),
    request_body = NewApiToken,
    security(("user_jwt" = [])),
    responses((status = 201, body = CreatedApiToken)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(new): Json<NewApiToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>)> {
    // A token reads the workgroup's data: nobody mints one for more than they may read.
    let access = user.access(&state.db, workgroup_id).await?;
    access.require(Permission::ManageWorkgroup)?;
    access.require(Permission::ViewData)?;
    Validator::default().name("name", &new.name).finish()?;
    let issued = secret::issue(API_TOKEN_PREFIX);
    let token = query_tokens!(
        "INSERT INTO api_tokens (id, workgroup_id, name, secret_hash, created_by)
         VALUES ($1, $2, $3, $4, $5) RETURNING ",
        "",
        issued.id,
        workgroup_id,
        new.name.trim(),
        &issued.hash,
        user.id,
    )
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedApiToken { token, secret: issued.token })))
}

/// Revoke an API token: it stops working at once. Revoking twice is harmless.
#[utoipa::path(delete, path = "/api/v1/workgroups/{workgroup_id}/api-tokens/{token_id}", tag = "api-tokens",
    params(("workgroup_id" = Uuid, Path), ("token_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, token_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let found = sqlx::query!(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND workgroup_id = $2",
        token_id,
        workgroup_id,
    )
    .execute(&state.db)
    .await?;
    if found.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    state.auth.tokens.forget(&token_id);
    Ok(StatusCode::NO_CONTENT)
}
