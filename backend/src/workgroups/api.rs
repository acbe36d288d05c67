//! The workgroups themselves: created by platform operators (with a subscription if given),
//! listed, read and renamed.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, CurrentUser, Permission};
use crate::http::fields::Name;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result, Validator};
use crate::state::AppState;
use crate::subscriptions::terms::{self, Actor, Change, SubscriptionFields};

#[derive(Debug, Serialize, ToSchema)]
pub struct Workgroup {
    pub id: Uuid,
    #[schema(example = "Northern Quarries Ltd")]
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkgroupFields {
    pub name: Name,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkgroup {
    pub name: Name,
    /// Its subscription from the start; without one the workgroup has none (its cloud
    /// features wait for one) until an operator gives it.
    pub subscription: Option<SubscriptionFields>,
}

/// Create a workgroup (platform operators), with its subscription if one is given.
#[utoipa::path(post, path = "/api/v1/workgroups", tag = "workgroups",
    request_body = NewWorkgroup,
    security(("user_jwt" = [])),
    responses((status = 201, body = Workgroup)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(new): Json<NewWorkgroup>,
) -> Result<(StatusCode, Json<Workgroup>)> {
    if !user.is_operator {
        return Err(Error::Forbidden("platform_operator"));
    }
    Validator::default().name("name", &new.name).finish()?;
    let mut tx = state.db.begin().await?;
    let workgroup = sqlx::query_as!(
        Workgroup,
        "INSERT INTO workgroups (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
        Uuid::now_v7(),
        new.name.trim(),
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(subscription) = new.subscription {
        let actor = Actor::operator(&mut *tx, user.id).await?;
        let (now, grace_days) = (state.clock.now(), state.config.subscriptions.grace_days);
        let set = Change::Set(subscription);
        terms::apply_in(&mut tx, workgroup.id, set, &actor, now, grace_days).await.map_err(in_field("subscription"))?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(workgroup)))
}

/// Field errors of a nested object, named by their path (`subscription.period_end`).
fn in_field(parent: &'static str) -> impl Fn(Error) -> Error {
    move |error| match error {
        Error::Validation(errors) => Error::Validation(
            errors
                .into_iter()
                .map(|e| crate::http::FieldError::new(format!("{parent}.{}", e.field), e.message))
                .collect(),
        ),
        other => other,
    }
}

/// List workgroups: every one for platform operators, otherwise the caller's own.
#[utoipa::path(get, path = "/api/v1/workgroups", tag = "workgroups",
    params(PageParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Page<Workgroup>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<Workgroup>>> {
    let limit = page.limit()?;
    // $1: the user whose memberships bound the list (NULL: every workgroup);
    // $2: the one workgroup of an API token.
    let (member, only): (Option<Uuid>, Option<Uuid>) = match &caller {
        Caller::User(user) if user.is_operator => (None, None),
        Caller::User(user) => (Some(user.id), None),
        Caller::ApiToken(token) => (None, Some(token.workgroup_id)),
    };
    let rows = sqlx::query_as!(
        Workgroup,
        "SELECT id, name, created_at FROM workgroups w
         WHERE ($1::uuid IS NULL OR EXISTS (SELECT 1 FROM memberships m WHERE m.workgroup_id = w.id AND m.user_id = $1))
           AND ($2::uuid IS NULL OR w.id = $2)
           AND ($3::uuid IS NULL OR w.id > $3)
         ORDER BY id LIMIT $4",
        member,
        only,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |w| w.id)))
}

/// One workgroup.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}", tag = "workgroups",
    params(("workgroup_id" = Uuid, Path)),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Workgroup)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
) -> Result<Json<Workgroup>> {
    caller.access(&state.db, workgroup_id).await?;
    let workgroup =
        sqlx::query_as!(Workgroup, "SELECT id, name, created_at FROM workgroups WHERE id = $1", workgroup_id)
            .fetch_one(&state.db)
            .await?;
    Ok(Json(workgroup))
}

/// Rename a workgroup.
#[utoipa::path(patch, path = "/api/v1/workgroups/{workgroup_id}", tag = "workgroups",
    params(("workgroup_id" = Uuid, Path)),
    request_body = WorkgroupFields,
    security(("user_jwt" = [])),
    responses((status = 200, body = Workgroup)))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(fields): Json<WorkgroupFields>,
) -> Result<Json<Workgroup>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    Validator::default().name("name", &fields.name).finish()?;
    let workgroup = sqlx::query_as!(
        Workgroup,
        "UPDATE workgroups SET name = $2 WHERE id = $1 RETURNING id, name, created_at",
        workgroup_id,
        fields.name.trim(),
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(workgroup))
}

/// Locks the workgroup's row until the transaction ends, so that changes counted against
/// it — its subscription, the scanners it covers — happen one after another; 404 when there
/// is no such workgroup. `NO KEY`: inserts referring to the workgroup go on meanwhile.
pub async fn lock(tx: &mut sqlx::PgConnection, workgroup_id: Uuid) -> Result<()> {
    sqlx::query!("SELECT 1 AS locked FROM workgroups WHERE id = $1 FOR NO KEY UPDATE", workgroup_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|_| ())
        .ok_or(Error::NotFound)
}
