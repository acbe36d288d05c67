//! Who is calling: the authentication extractors. They fail closed — a missing, malformed,
//! expired or revoked credential is a 401, never an anonymous caller.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::request::Parts;
use std::sync::Arc;
use uuid::Uuid;

use super::cache::{Account, AuthCache, Token};
use super::client_addr::ClientAddr;
use super::secret::{self, API_TOKEN_PREFIX, DEVICE_PREFIX};
use crate::http::Error;
use crate::state::AppState;
use crate::subscriptions::{Gate, Period, SubscriptionStatus, status_at};

/// A signed-in dashboard user (JWT).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub is_operator: bool,
    /// On a cloud feature's route: the workgroup's subscription must be available.
    pub gate: Option<Gate>,
    /// Where the user's standings are remembered.
    pub(super) cache: Arc<AuthCache>,
}

/// A customer integration's read-only API token.
#[derive(Debug, Clone)]
pub struct ApiTokenCaller {
    pub token_id: Uuid,
    pub workgroup_id: Uuid,
    /// On a cloud feature's route: the gate, and its workgroup's subscription status then.
    pub gate: Option<(Gate, SubscriptionStatus)>,
}

/// Either kind of caller that may read workgroup data.
#[derive(Debug, Clone)]
pub enum Caller {
    User(CurrentUser),
    ApiToken(ApiTokenCaller),
}

/// A scanner, authenticated by its device credential. It can act only as itself.
#[derive(Debug, Clone)]
pub struct AuthenticatedDevice {
    pub device_id: Uuid,
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    /// Its workgroup's subscription, now. On a cloud feature's route it was available.
    pub subscription: SubscriptionStatus,
}

/// Browsers cannot set headers on a WebSocket: there the token may travel as the
/// subprotocol `bearer.<token>` instead (offered beside `binary`, the one we select).
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

/// The bearer token of a request: from `Authorization`, or, without one, from a
/// `bearer.<token>` WebSocket subprotocol.
pub(crate) fn bearer(parts: &Parts) -> Result<&str, Error> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return websocket_bearer(parts).ok_or(Error::Unauthorized("missing bearer token"));
    };
    let value = value.to_str().map_err(|_| Error::Unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(Error::Unauthorized("expected `Authorization: Bearer <token>`")),
    }
}

fn websocket_bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(BEARER_PROTOCOL_PREFIX))
        .filter(|token| !token.is_empty())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts)?;
        if secret::parse(API_TOKEN_PREFIX, token).is_some() {
            // A valid integration token on a route that changes data: say why it cannot.
            api_token(state, token, None).await?;
            return Err(Error::ReadOnlyToken);
        }
        let claims = state.jwt.verify(token).ok_or(Error::Unauthorized("invalid or expired token"))?;
        let account = state
            .auth
            .accounts
            .get_or_load(claims.sub, || async {
                let account = sqlx::query_as!(
                    Account,
                    r#"SELECT EXISTS (SELECT 1 FROM platform_operators WHERE user_id = u.id) AS "is_operator!",
                              u.session_epoch
                       FROM users u WHERE u.id = $1"#,
                    claims.sub,
                )
                .fetch_optional(&state.db)
                .await?;
                Ok::<_, Error>(account)
            })
            .await?
            .ok_or(Error::Unauthorized("the account no longer exists"))?;
        if claims.epoch != account.session_epoch {
            return Err(Error::Unauthorized("signed out: the password was changed; sign in again"));
        }
        tracing::Span::current().record("user.id", tracing::field::display(claims.sub));
        state.rate_limit.check(&format!("user:{}", claims.sub))?;
        let (is_operator, cache) = (account.is_operator, state.auth.clone());
        Ok(CurrentUser { id: claims.sub, is_operator, gate: Gate::of(parts, state), cache })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts)?;
        if secret::parse(API_TOKEN_PREFIX, token).is_some() {
            return Ok(Caller::ApiToken(api_token(state, token, Gate::of(parts, state)).await?));
        }
        Ok(Caller::User(CurrentUser::from_request_parts(parts, state).await?))
    }
}

async fn api_token(state: &AppState, token: &str, gate: Option<Gate>) -> Result<ApiTokenCaller, Error> {
    const INVALID: Error = Error::Unauthorized("invalid or revoked API token");
    let (id, presented) = secret::parse(API_TOKEN_PREFIX, token).ok_or(INVALID)?;
    let row = state
        .auth
        .tokens
        .get_or_load(id, || async {
            let row = sqlx::query!(
                r#"SELECT t.workgroup_id, t.secret_hash, s.trial AS "trial?", s.period_end AS "period_end?",
                          s.grace_days AS "grace_days?", s.cancelled_at
                   FROM api_tokens t LEFT JOIN subscriptions s ON s.workgroup_id = t.workgroup_id
                   WHERE t.id = $1 AND t.revoked_at IS NULL"#,
                id,
            )
            .fetch_optional(&state.db)
            .await?;
            Ok::<_, Error>(row.map(|row| Token {
                workgroup_id: row.workgroup_id,
                secret_hash: row.secret_hash,
                subscription: Period::from_outer_join(row.trial, row.period_end, row.grace_days, row.cancelled_at),
            }))
        })
        .await?;
    let token = row.ok_or(INVALID)?;
    if !secret::matches(presented, &token.secret_hash) {
        return Err(INVALID);
    }
    state.rate_limit.check(&format!("token:{id}"))?;
    // At most one write a minute per token and replica: usage is for people reviewing tokens.
    if state.auth.token_uses.get(&id).is_none() {
        state.auth.token_uses.put(id, (), std::time::Instant::now());
        record_use(&state.db, Credential::ApiToken, id).await?;
    }
    let gate = gate.map(|gate| {
        let status = status_at(token.subscription.as_ref(), gate.now);
        (gate, status)
    });
    Ok(ApiTokenCaller { token_id: id, workgroup_id: token.workgroup_id, gate })
}

impl FromRequestParts<AppState> for AuthenticatedDevice {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        const INVALID: Error = Error::Unauthorized("invalid or revoked device credential");
        let (credential_id, presented) = secret::parse(DEVICE_PREFIX, bearer(parts)?).ok_or(INVALID)?;
        let row = sqlx::query!(
            r#"SELECT d.id, d.workgroup_id, d.site_id, c.secret_hash,
                      subscription_status(s, $2) AS "subscription!: SubscriptionStatus"
               FROM device_credentials c JOIN devices d ON d.id = c.device_id
               LEFT JOIN subscriptions s ON s.workgroup_id = d.workgroup_id
               WHERE c.id = $1 AND c.revoked_at IS NULL"#,
            credential_id,
            state.clock.now(),
        )
        .fetch_optional(&state.db)
        .await?
        .ok_or(INVALID)?;
        let (device_id, workgroup_id, site_id, stored) = (row.id, row.workgroup_id, row.site_id, row.secret_hash);
        let subscription = row.subscription;
        if !secret::matches(presented, &stored) {
            return Err(INVALID);
        }
        state.device_rate_limit.check(&format!("device:{device_id}"))?;
        let address = ClientAddr::from_request_parts(parts, state).await?.0;
        // Every authenticated call is a sign of life and shows the device's public address
        // (what external security scans target). Written at most every 30 s unless it moved.
        sqlx::query!(
            "UPDATE devices SET last_seen_at = now(), public_address = $2
             WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < now() - interval '30 seconds'
                                OR public_address IS DISTINCT FROM $2)",
            device_id,
            ipnet::IpNet::from(address),
        )
        .execute(&state.db)
        .await?;
        record_use(&state.db, Credential::Device, credential_id).await?;
        tracing::Span::current().record("device.id", tracing::field::display(device_id));
        // A scanner's cloud features stop with its workgroup's subscription; it was seen all
        // the same (above), and its measurements still arrive over AMQP.
        if let Some(gate) = Gate::of(parts, state) {
            gate.check(Some(subscription))?;
        }
        Ok(AuthenticatedDevice { device_id, workgroup_id, site_id, subscription })
    }
}

enum Credential {
    ApiToken,
    Device,
}

/// Records that a credential was used, at most once a minute: usage is for people reviewing
/// credentials.
async fn record_use(db: &sqlx::PgPool, credential: Credential, id: Uuid) -> Result<(), Error> {
    match credential {
        Credential::ApiToken => {
            sqlx::query!(
                "UPDATE api_tokens SET last_used_at = now()
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                id,
            )
            .execute(db)
            .await?
        }
        Credential::Device => {
            sqlx::query!(
                "UPDATE device_credentials SET last_used_at = now()
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                id,
            )
            .execute(db)
            .await?
        }
    };
    Ok(())
}
