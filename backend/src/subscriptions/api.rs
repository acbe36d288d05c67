//! The subscription endpoints: a workgroup's own, its history, and (for platform operators)
//! every workgroup's, with the forms that change them.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::terms::{self, Action, Actor, Change, Renewal, SubscriptionFields, Terms};
use super::{Row, Subscription, SubscriptionStatus, query_subscriptions};
use crate::auth::{Caller, CurrentUser, Permission};
use crate::http::page::bounded;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result};
use crate::state::AppState;

/// The workgroup's subscription: its status now, period, grace and scanners. Any member,
/// the workgroup's API tokens and platform operators may see it.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/subscription", tag = "subscriptions",
    params(("workgroup_id" = Uuid, Path)),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Subscription)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
) -> Result<Json<Subscription>> {
    caller.access(&state.db, workgroup_id).await?;
    current(&state, workgroup_id).await.map(Json)
}

async fn current(state: &AppState, workgroup_id: Uuid) -> Result<Subscription> {
    let now = state.clock.now();
    let row = super::fetch(&state.db, workgroup_id, now).await?.ok_or(Error::NotFound)?;
    Ok(row.at(now, &state.config.subscriptions.contact))
}

/// Create or change the workgroup's subscription, its terms given whole (platform
/// operators). A cancelled subscription given new terms is active again.
#[utoipa::path(put, path = "/api/v1/workgroups/{workgroup_id}/subscription", tag = "subscriptions",
    params(("workgroup_id" = Uuid, Path)),
    request_body = SubscriptionFields,
    security(("user_jwt" = [])),
    responses((status = 200, description = "Changed", body = Subscription),
        (status = 201, description = "Created", body = Subscription)))]
pub async fn set(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(fields): Json<SubscriptionFields>,
) -> Result<(StatusCode, Json<Subscription>)> {
    let (action, subscription) = change(&state, &user, workgroup_id, Change::Set(fields)).await?;
    let status = if action == Some(Action::Created) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(subscription)))
}

/// Renew the subscription to a new period end (platform operators): a period that still
/// runs is extended, otherwise (in grace, lapsed, cancelled) a new one starts now.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/subscription/renew", tag = "subscriptions",
    params(("workgroup_id" = Uuid, Path)),
    request_body = Renewal,
    security(("user_jwt" = [])),
    responses((status = 200, body = Subscription),
        (status = 409, description = "The workgroup has no subscription to renew (`no-subscription`)")))]
pub async fn renew(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(renewal): Json<Renewal>,
) -> Result<Json<Subscription>> {
    Ok(Json(change(&state, &user, workgroup_id, Change::Renew(renewal)).await?.1))
}

/// Cancel the subscription now (platform operators): cloud features stop at once and open
/// remote sessions end; stored data stays, and ingest goes on. Cancelling again changes nothing.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/subscription/cancel", tag = "subscriptions",
    params(("workgroup_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 200, body = Subscription),
        (status = 409, description = "The workgroup has no subscription to cancel (`no-subscription`)")))]
pub async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
) -> Result<Json<Subscription>> {
    Ok(Json(change(&state, &user, workgroup_id, Change::Cancel).await?.1))
}

/// An operator's change, applied and recorded, and the subscription after it; one that no
/// longer provides the cloud features ends the workgroup's remote sessions at once.
async fn change(
    state: &AppState,
    user: &CurrentUser,
    workgroup_id: Uuid,
    change: Change,
) -> Result<(Option<Action>, Subscription)> {
    user.access(&state.db, workgroup_id).await?;
    if !user.is_operator {
        return Err(Error::Forbidden("platform_operator"));
    }
    let actor = Actor::operator(&state.db, user.id).await?;
    let grace_days = state.config.subscriptions.grace_days;
    let action = terms::apply(&state.db, workgroup_id, change, &actor, state.clock.now(), grace_days).await?;
    state.auth.forget_workgroup(workgroup_id);
    let subscription = current(state, workgroup_id).await?;
    if !subscription.features_available {
        state.remote.subscription_ended(workgroup_id).await?;
    }
    Ok((action, subscription))
}

/// One change of a subscription: who, when, what.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionChange {
    pub id: Uuid,
    pub action: Action,
    /// The operator's account; null for the command line (or an account since deleted).
    pub changed_by: Option<Uuid>,
    /// Who made it, as they were known then: an e-mail address, or the command line.
    #[schema(example = "ops@myscanner.example")]
    pub actor: String,
    pub changed_at: DateTime<Utc>,
    /// The terms before; null for a creation.
    pub before: Option<Terms>,
    pub after: Terms,
}

/// Every change of the workgroup's subscription, newest first. Needs `manage_workgroup`.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/subscription/history", tag = "subscriptions",
    params(("workgroup_id" = Uuid, Path), PageParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<SubscriptionChange>)))]
pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<SubscriptionChange>>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let limit = page.limit()?;
    let rows = sqlx::query!(
        r#"SELECT id, action AS "action: Action", changed_by, actor, changed_at,
                  before AS "before: sqlx::types::Json<Terms>", after AS "after: sqlx::types::Json<Terms>"
           FROM subscription_changes
           WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"#,
        workgroup_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let changes = rows.into_iter().map(|r| SubscriptionChange {
        id: r.id,
        action: r.action,
        changed_by: r.changed_by,
        actor: r.actor,
        changed_at: r.changed_at,
        before: r.before.map(|terms| terms.0),
        after: r.after.0,
    });
    Ok(Json(Page::from_rows(changes.collect(), limit, |c| c.id)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionFilter {
    /// Only subscriptions in this status (`none`: workgroups without one).
    pub status: Option<SubscriptionStatus>,
    /// Only those whose trial or active period ends within this many days (the grace then
    /// follows), or whose grace does.
    #[param(minimum = 1, maximum = 366)]
    pub ending_within_days: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// Every workgroup's subscription, by workgroup (platform operators): filter by status, or
/// by those ending soon.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions",
    params(SubscriptionFilter),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<Subscription>)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filter): Query<SubscriptionFilter>,
) -> Result<Json<Page<Subscription>>> {
    if !user.is_operator {
        return Err(Error::Forbidden("platform_operator"));
    }
    let page = PageParams { limit: filter.limit, cursor: filter.cursor.clone() };
    let limit = page.limit()?;
    let within = match filter.ending_within_days {
        None => None,
        days => Some(bounded("ending_within_days", days, 1, 1..=366)?),
    };
    let now = state.clock.now();
    let rows = query_subscriptions!(
        "
         WHERE ($2::text IS NULL OR subscription_status(s, $1) = $2)
           AND ($3::int8 IS NULL OR (subscription_available(s, $1) AND s.period_end
               + CASE WHEN subscription_status(s, $1) = 'grace' THEN s.grace_days ELSE 0 END * interval '86400 seconds'
               < $1 + $3 * interval '86400 seconds'))
           AND ($4::uuid IS NULL OR w.id > $4)
         ORDER BY w.id LIMIT $5",
        now,
        filter.status.map(SubscriptionStatus::as_str),
        within,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    let page = Page::from_rows(rows, limit, Row::id);
    let contact = &state.config.subscriptions.contact;
    Ok(Json(Page {
        items: page.items.into_iter().map(|row| row.at(now, contact)).collect(),
        next_cursor: page.next_cursor,
    }))
}
