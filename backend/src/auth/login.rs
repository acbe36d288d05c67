//! Signing in, and the signed-in user's own account.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::Permission;
use super::client_addr::ClientAddr;
use super::principal::CurrentUser;
use super::{password, throttle};
use crate::http::{Error, Json, Result};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "admin@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires; sign in again then.
    pub expires_in: u64,
}

/// Sign in with e-mail and password.
///
/// Repeated failures lock the account, and separately the client address, for a while
/// (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "Wrong e-mail or password"),
        (status = 429, description = "Too many failed sign-ins, or too many sign-ins at once; see Retry-After"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(request): Json<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    let keys = throttle::Keys::sign_in(&state.db, &request.email, address).await?;
    let attempt = throttle::attempt(&state.db, &keys, &state.config.auth.login_throttle).await?;
    let user = sqlx::query!(
        "SELECT id, password_hash, session_epoch FROM users WHERE lower(email) = lower($1)",
        request.email.trim(),
    )
    .fetch_optional(&state.db)
    .await?;
    let (account, hash) = match user {
        Some(u) => (Some((u.id, u.session_epoch)), Some(u.password_hash)),
        None => (None, None),
    };
    let valid = match state.passwords.verify(request.password, hash).await {
        Ok(valid) => valid,
        Err(shed) => {
            attempt.not_made(&state.db).await?;
            return Err(shed);
        }
    };
    let Some((id, epoch)) = account.filter(|_| valid) else {
        return Err(Error::Unauthorized("wrong e-mail or password"));
    };
    attempt.succeeded(&state.db).await?;
    let (access_token, expires_in) = state.jwt.issue(id, epoch)?;
    tracing::info!(user.id = %id, "signed in");
    Ok(Json(LoginResponse { access_token, token_type: "Bearer", expires_in }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// The vendor's staff: may create workgroups and provision devices.
    pub is_operator: bool,
    pub memberships: Vec<MyMembership>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyMembership {
    pub workgroup_id: Uuid,
    pub workgroup_name: String,
    pub permissions: Permissions,
}

/// A set of permissions as stored (`text[]`) and shown (an array of names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Permissions(pub Vec<Permission>);

impl TryFrom<Vec<String>> for Permissions {
    type Error = String;
    fn try_from(names: Vec<String>) -> std::result::Result<Self, String> {
        names
            .iter()
            .map(|n| Permission::parse(n).ok_or_else(|| format!("unknown permission {n}")))
            .collect::<std::result::Result<_, _>>()
            .map(Permissions)
    }
}

/// Read straight from a `text[]` column (`permissions AS "permissions: Permissions"`).
impl sqlx::Type<sqlx::Postgres> for Permissions {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Permissions {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        let names = <Vec<String> as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Permissions::try_from(names)?)
    }
}

impl Permissions {
    /// Sorted and without repeats, as stored.
    pub fn normalized(mut self) -> Self {
        self.0.sort();
        self.0.dedup();
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|p| p.as_str()).collect()
    }
}

/// The signed-in user, with the workgroups they belong to.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("user_jwt" = [])),
    responses((status = 200, body = Me)))]
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Me>> {
    let account = sqlx::query!("SELECT email, name FROM users WHERE id = $1", user.id).fetch_one(&state.db).await?;
    let memberships = sqlx::query_as!(
        MyMembership,
        r#"SELECT m.workgroup_id, w.name AS workgroup_name, m.permissions AS "permissions: Permissions"
           FROM memberships m JOIN workgroups w ON w.id = m.workgroup_id
           WHERE m.user_id = $1 ORDER BY w.name"#,
        user.id,
    )
    .fetch_all(&state.db)
    .await?;
    let (email, name) = (account.email, account.name);
    Ok(Json(Me { id: user.id, email, name, is_operator: user.is_operator, memberships }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// Change the signed-in user's password. Every earlier session of the account ends (its
/// tokens stop working, its remote-control sessions close); the answer is a new session.
/// Wrong `current_password` guesses count against the account like failed sign-ins.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "auth",
    security(("user_jwt" = [])),
    request_body = ChangePassword,
    responses(
        (status = 200, description = "Changed: a new session; every earlier one has ended", body = LoginResponse),
        (status = 422, description = "Too short, or the current password is wrong"),
        (status = 429, description = "Too many wrong guesses, or too many password checks at once; see Retry-After"),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    ClientAddr(address): ClientAddr,
    Json(request): Json<ChangePassword>,
) -> Result<Json<LoginResponse>> {
    password::check_strength("new_password", &request.new_password)?;
    let keys = throttle::Keys::user(&state.db, user.id, address).await?;
    let attempt = throttle::attempt(&state.db, &keys, &state.config.auth.login_throttle).await?;
    let stored =
        sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", user.id).fetch_one(&state.db).await?;
    let valid = match state.passwords.verify(request.current_password, Some(stored)).await {
        Ok(valid) => valid,
        Err(shed) => {
            attempt.not_made(&state.db).await?;
            return Err(shed);
        }
    };
    if !valid {
        return Err(Error::invalid_field("current_password", "is not the current password"));
    }
    attempt.succeeded(&state.db).await?;
    let hash = state.passwords.hash(request.new_password).await?;
    let epoch = sqlx::query_scalar!(
        "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1 WHERE id = $1 RETURNING session_epoch",
        user.id,
        hash,
    )
    .fetch_one(&state.db)
    .await?;
    state.auth.forget_user(user.id);
    state.remote.authority_lost(user.id, None).await?;
    tracing::info!(user.id = %user.id, "password changed; earlier sessions ended");
    let (access_token, expires_in) = state.jwt.issue(user.id, epoch)?;
    Ok(Json(LoginResponse { access_token, token_type: "Bearer", expires_in }))
}
