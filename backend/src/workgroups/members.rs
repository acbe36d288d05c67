//! The people of a workgroup and their permissions. Accounts are global (one e-mail, one
//! password); a membership gives an account permissions in one workgroup.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::login::Permissions;
use crate::auth::{Caller, CurrentUser, Permission, password};
use crate::http::fields::Name;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result, ResultExt, Validator};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub workgroup_id: Uuid,
    pub email: String,
    pub name: String,
    pub permissions: Permissions,
    pub created_at: DateTime<Utc>,
}

/// Adds a person to the workgroup. An e-mail without an account creates one, and then
/// `name` and an initial `password` are required. An account that exists already (a
/// member of another workgroup) can be added only by a platform operator, who verifies
/// that its holder is who the workgroup means: otherwise a workgroup could pre-create an
/// account under someone else's address and later read every workgroup that adds it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    #[schema(
        example = "operator@example.com",
        max_length = 320,
        pattern = r"^[^\s@\u0000-\u001F\u007F-\u009F]+@[^\s@\u0000-\u001F\u007F-\u009F]+\.[^\s@\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub email: String,
    pub name: Option<Name>,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    pub password: Option<String>,
    pub permissions: Permissions,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberChanges {
    pub permissions: Permissions,
}

/// A checked statement reading [`Member`]s: `select_members!(" WHERE …", args…)`.
macro_rules! select_members {
    ($filter:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Member,
            r#"SELECT m.user_id, m.workgroup_id, u.email, u.name, m.permissions AS "permissions: Permissions", m.created_at
               FROM memberships m JOIN users u ON u.id = m.user_id"# + $filter
            $(, $arg)*
        )
    };
}

async fn fetch(db: &PgPool, workgroup_id: Uuid, user_id: Uuid) -> Result<Member> {
    Ok(select_members!(" WHERE m.workgroup_id = $1 AND m.user_id = $2", workgroup_id, user_id).fetch_one(db).await?)
}

/// What the service takes for an e-mail address (the document's pattern for it): one `@`,
/// a dot in the domain, no spaces or control characters, at most 320 characters.
pub const EMAIL_PATTERN: &str =
    r"^[^\s@\u0000-\u001F\u007F-\u009F]+@[^\s@\u0000-\u001F\u007F-\u009F]+\.[^\s@\u0000-\u001F\u007F-\u009F]+$";

pub fn valid_email(email: &str) -> bool {
    static COMPILED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let regex = COMPILED.get_or_init(|| regex::Regex::new(EMAIL_PATTERN).expect("the e-mail pattern compiles"));
    email.chars().count() <= 320 && regex.is_match(email)
}

/// List the workgroup's members.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/members", tag = "members",
    params(("workgroup_id" = Uuid, Path), PageParams),
    security(("user_jwt" = [])),
    responses((status = 200, body = Page<Member>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<Member>>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let limit = page.limit()?;
    let rows = select_members!(
        " WHERE m.workgroup_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2) ORDER BY m.user_id LIMIT $3",
        workgroup_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |m| m.user_id)))
}

/// Add a person to the workgroup, creating their account if the e-mail has none.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/members", tag = "members",
    params(("workgroup_id" = Uuid, Path)),
    request_body = NewMember,
    security(("user_jwt" = [])),
    responses((status = 201, body = Member),
        (status = 409, description = "Already a member, or an existing account only an operator may add")))]
pub async fn add(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(new): Json<NewMember>,
) -> Result<(StatusCode, Json<Member>)> {
    let access = user.access(&state.db, workgroup_id).await?;
    access.require(Permission::ManageWorkgroup)?;
    Validator::default().check(valid_email(&new.email), "email", "must be an e-mail address").finish()?;
    let email = new.email.as_str();
    let existing = sqlx::query_scalar!("SELECT id FROM users WHERE lower(email) = lower($1)", email)
        .fetch_optional(&state.db)
        .await?;
    let mut tx = state.db.begin().await?;
    let user_id = match existing {
        Some(id) if id == user.id && !access.member => return Err(Error::SelfGrant),
        Some(id) if user.is_operator => {
            tracing::info!(operator.id = %user.id, user.id = %id, %workgroup_id, "operator added an existing account");
            id
        }
        Some(_) => {
            return Err(Error::conflict(
                "account-exists",
                "an account with this e-mail exists; MyScanner support can add it to the workgroup",
            ));
        }
        None => {
            let name = new.name.as_deref().unwrap_or_default();
            let password = new.password.clone().unwrap_or_default();
            Validator::default().name("name", name).finish()?;
            password::check_strength("password", &password)?;
            let id = Uuid::now_v7();
            let password_hash = state.passwords.hash(password).await?;
            sqlx::query!(
                "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)",
                id,
                email,
                name.trim(),
                password_hash,
            )
            .execute(&mut *tx)
            .await
            .on_constraint("users_email_key", || Error::conflict("email-taken", "the e-mail was just taken"))?;
            id
        }
    };
    sqlx::query!(
        "INSERT INTO memberships (workgroup_id, user_id, permissions) VALUES ($1, $2, $3)",
        workgroup_id,
        user_id,
        &new.permissions.normalized().names() as &[&str],
    )
    .execute(&mut *tx)
    .await
    .on_constraint("memberships_pkey", || Error::conflict("already-member", "the person is already a member"))?;
    tx.commit().await?;
    state.auth.forget_standing(user_id, workgroup_id);
    Ok((StatusCode::CREATED, Json(fetch(&state.db, workgroup_id, user_id).await?)))
}

/// One member.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/members/{user_id}", tag = "members",
    params(("workgroup_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 200, body = Member)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((workgroup_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Member>> {
    caller.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    Ok(Json(fetch(&state.db, workgroup_id, user_id).await?))
}

/// Change a member's permissions.
#[utoipa::path(patch, path = "/api/v1/workgroups/{workgroup_id}/members/{user_id}", tag = "members",
    params(("workgroup_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    request_body = MemberChanges,
    security(("user_jwt" = [])),
    responses((status = 200, body = Member),
        (status = 409, description = "It would leave the workgroup without a manager")))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, user_id)): Path<(Uuid, Uuid)>,
    Json(changes): Json<MemberChanges>,
) -> Result<Json<Member>> {
    let access = user.access(&state.db, workgroup_id).await?;
    access.require(Permission::ManageWorkgroup)?;
    if user_id == user.id && !access.member {
        return Err(Error::SelfGrant);
    }
    let permissions = changes.permissions.normalized();
    let mut tx = state.db.begin().await?;
    let managers_before = managers(&mut tx, workgroup_id).await?;
    let updated = sqlx::query!(
        "UPDATE memberships SET permissions = $3 WHERE workgroup_id = $1 AND user_id = $2",
        workgroup_id,
        user_id,
        &permissions.names() as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    keeps_a_manager(&mut tx, workgroup_id, managers_before).await?;
    tx.commit().await?;
    state.auth.forget_standing(user_id, workgroup_id);
    if !permissions.0.contains(&Permission::ControlDevices) {
        state.remote.authority_lost(user_id, Some(workgroup_id)).await?;
    }
    Ok(Json(fetch(&state.db, workgroup_id, user_id).await?))
}

/// Remove a member from the workgroup (their account stays).
#[utoipa::path(delete, path = "/api/v1/workgroups/{workgroup_id}/members/{user_id}", tag = "members",
    params(("workgroup_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 204, description = "Removed"),
        (status = 409, description = "It would leave the workgroup without a manager")))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let mut tx = state.db.begin().await?;
    let managers_before = managers(&mut tx, workgroup_id).await?;
    let removed =
        sqlx::query!("DELETE FROM memberships WHERE workgroup_id = $1 AND user_id = $2", workgroup_id, user_id)
            .execute(&mut *tx)
            .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    keeps_a_manager(&mut tx, workgroup_id, managers_before).await?;
    tx.commit().await?;
    state.auth.forget_standing(user_id, workgroup_id);
    state.remote.authority_lost(user_id, Some(workgroup_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Locks the workgroup row (so that two concurrent demotions cannot both pass) and counts
/// its members with `manage_workgroup`.
async fn managers(tx: &mut sqlx::PgConnection, workgroup_id: Uuid) -> Result<i64> {
    super::api::lock(&mut *tx, workgroup_id).await?;
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "managers!" FROM memberships
           WHERE workgroup_id = $1 AND 'manage_workgroup' = ANY (permissions)"#,
        workgroup_id,
    )
    .fetch_one(&mut *tx)
    .await?)
}

/// A workgroup that had a manager keeps one: nobody locks their organisation out of itself.
async fn keeps_a_manager(tx: &mut sqlx::PgConnection, workgroup_id: Uuid, before: i64) -> Result<()> {
    if before > 0 && managers(tx, workgroup_id).await? == 0 {
        return Err(Error::conflict(
            "last-manager",
            "the workgroup must keep at least one member with manage_workgroup",
        ));
    }
    Ok(())
}
