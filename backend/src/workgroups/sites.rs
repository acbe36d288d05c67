//! Sites (plants) of a workgroup. Each has the IANA time zone its reports are given in.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Caller, CurrentUser, Permission};
use crate::http::fields::Name;
use crate::http::{Error, Json, Page, PageParams, Path, Query, Result, ResultExt, Validator};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Site {
    pub id: Uuid,
    pub workgroup_id: Uuid,
    #[schema(example = "North Pit")]
    pub name: String,
    /// IANA time zone name.
    #[schema(example = "Australia/Perth")]
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    pub name: Name,
    pub time_zone: TimeZone,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteChanges {
    pub name: Option<Name>,
    pub time_zone: Option<TimeZone>,
}

/// The IANA time zone names a site may have: PostgreSQL's (which converts summaries into
/// them) without its `posix/` and `right/` copies. The list is the published enum too; a
/// test checks the database knows every one.
pub const TIME_ZONES: &str = include_str!("time_zones.txt");

/// An IANA time zone name from [`TIME_ZONES`].
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct TimeZone(pub String);

impl TimeZone {
    pub fn is_known(name: &str) -> bool {
        TIME_ZONES.lines().any(|known| known == name)
    }
}

impl std::ops::Deref for TimeZone {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for TimeZone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(TIME_ZONES.lines()))
            .description(Some("An IANA time zone name, such as `Europe/London`."))
            .examples([serde_json::json!("Australia/Perth")])
            .into()
    }
}

impl utoipa::ToSchema for TimeZone {}

/// A checked statement reading [`Site`]s: `before` + the columns + `after`.
macro_rules! query_sites {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(Site, $before + "id, workgroup_id, name, time_zone, created_at" + $after $(, $arg)*)
    };
}

fn validate(name: Option<&str>, time_zone: Option<&str>) -> Result<()> {
    let mut v = Validator::default();
    if let Some(name) = name {
        v.name("name", name);
    }
    if let Some(tz) = time_zone {
        v.check(TimeZone::is_known(tz), "time_zone", "must be an IANA time zone name such as Europe/London");
    }
    v.finish()
}

fn name_taken() -> Error {
    Error::conflict("site-name-taken", "the workgroup already has a site with this name")
}

/// List the workgroup's sites.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/sites", tag = "sites",
    params(("workgroup_id" = Uuid, Path), PageParams),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Page<Site>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(workgroup_id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<Site>>> {
    caller.access(&state.db, workgroup_id).await?;
    let limit = page.limit()?;
    let rows = query_sites!(
        "SELECT ",
        " FROM sites WHERE workgroup_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
        workgroup_id,
        page.after::<Uuid>()?,
        limit + 1,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |s| s.id)))
}

/// Create a site.
#[utoipa::path(post, path = "/api/v1/workgroups/{workgroup_id}/sites", tag = "sites",
    params(("workgroup_id" = Uuid, Path)),
    request_body = NewSite,
    security(("user_jwt" = [])),
    responses((status = 201, body = Site),
        (status = 409, description = "A site of that name exists")))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(workgroup_id): Path<Uuid>,
    Json(new): Json<NewSite>,
) -> Result<(StatusCode, Json<Site>)> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    validate(Some(&new.name), Some(&new.time_zone))?;
    let site = query_sites!(
        "INSERT INTO sites (id, workgroup_id, name, time_zone) VALUES ($1, $2, $3, $4) RETURNING ",
        "",
        Uuid::now_v7(),
        workgroup_id,
        new.name.trim(),
        &*new.time_zone,
    )
    .fetch_one(&state.db)
    .await
    .on_constraint("sites_name_key", name_taken)?;
    Ok((StatusCode::CREATED, Json(site)))
}

/// One site.
#[utoipa::path(get, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}", tag = "sites",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path)),
    security(("user_jwt" = []), ("api_token" = [])),
    responses((status = 200, body = Site)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((workgroup_id, site_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Site>> {
    caller.access(&state.db, workgroup_id).await?;
    let site = query_sites!("SELECT ", " FROM sites WHERE workgroup_id = $1 AND id = $2", workgroup_id, site_id)
        .fetch_one(&state.db)
        .await?;
    Ok(Json(site))
}

/// Rename a site or change its time zone.
#[utoipa::path(patch, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}", tag = "sites",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path)),
    request_body = SiteChanges,
    security(("user_jwt" = [])),
    responses((status = 200, body = Site),
        (status = 409, description = "A site of that name exists")))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id)): Path<(Uuid, Uuid)>,
    Json(changes): Json<SiteChanges>,
) -> Result<Json<Site>> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    validate(changes.name.as_deref(), changes.time_zone.as_deref())?;
    let site = query_sites!(
        "UPDATE sites SET name = coalesce($3, name), time_zone = coalesce($4, time_zone)
         WHERE workgroup_id = $1 AND id = $2 RETURNING ",
        "",
        workgroup_id,
        site_id,
        changes.name.as_deref().map(str::trim),
        changes.time_zone.as_deref(),
    )
    .fetch_one(&state.db)
    .await
    .on_constraint("sites_name_key", name_taken)?;
    Ok(Json(site))
}

/// Delete a site that has no devices.
#[utoipa::path(delete, path = "/api/v1/workgroups/{workgroup_id}/sites/{site_id}", tag = "sites",
    params(("workgroup_id" = Uuid, Path), ("site_id" = Uuid, Path)),
    security(("user_jwt" = [])),
    responses((status = 204, description = "Deleted"),
        (status = 409, description = "Devices or measurements are still on the site")))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((workgroup_id, site_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    user.access(&state.db, workgroup_id).await?.require(Permission::ManageWorkgroup)?;
    let deleted = sqlx::query!("DELETE FROM sites WHERE workgroup_id = $1 AND id = $2", workgroup_id, site_id)
        .execute(&state.db)
        .await
        .on_constraint("devices_site_fkey", || {
            Error::conflict("site-has-devices", "move or remove the site's devices first")
        })
        .on_constraint("measurements_workgroup_id_site_id_fkey", || {
            Error::conflict("site-has-measurements", "the site's measurements are kept; it cannot be deleted")
        })?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
