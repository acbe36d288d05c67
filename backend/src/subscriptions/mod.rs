//! Subscriptions: MyScanner's cloud features need an active one.
//!
//! A workgroup has at most one subscription — a plan, the scanners it covers, its current
//! period and the grace after it. Its status is derived from the dates at the moment of each
//! request (`subscription_status()` in migrations/0012, given the service's [`Clock`]), never
//! stored by a job that might not run.
//!
//! While it is not available (none, lapsed, cancelled), the routes the router lists under
//! `cloud_features` are refused with `subscription-inactive` (see [`CloudFeature`]), weekly
//! scans are not enqueued and remote sessions end; ingest goes on and nothing is deleted.
//!
//! - `terms`: creating, changing, renewing and cancelling, with the history of each change;
//!   the API and `myscanner admin subscription` share it.
//! - `api`: the endpoints.

pub mod api;
pub mod terms;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// The workgroup has no subscription.
    #[default]
    None,
    /// A trial period.
    Trial,
    Active,
    /// The period ended less than `grace_days` ago: everything still works.
    Grace,
    /// The period and its grace are over.
    Lapsed,
    /// A platform operator cancelled it.
    Cancelled,
}

impl SubscriptionStatus {
    /// Whether the cloud features work.
    pub fn available(self) -> bool {
        matches!(self, SubscriptionStatus::Trial | SubscriptionStatus::Active | SubscriptionStatus::Grace)
    }

    /// Why the cloud features are not available, for people.
    pub fn why_inactive(self) -> &'static str {
        match self {
            SubscriptionStatus::None => "the workgroup has no subscription",
            SubscriptionStatus::Cancelled => "the workgroup's subscription was cancelled",
            _ => "the workgroup's subscription has lapsed",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::None => "none",
            SubscriptionStatus::Trial => "trial",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Grace => "grace",
            SubscriptionStatus::Lapsed => "lapsed",
            SubscriptionStatus::Cancelled => "cancelled",
        }
    }
}

/// What a subscription's status depends on, besides the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub trial: bool,
    pub period_end: DateTime<Utc>,
    pub grace_days: i32,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Period {
    /// A workgroup's period from the columns of `LEFT JOIN subscriptions s`, read as
    /// `s.trial AS "trial?", s.period_end AS "period_end?", s.grace_days AS "grace_days?",
    /// s.cancelled_at`: none without a subscription (the join's NULLs).
    pub fn from_outer_join(
        trial: Option<bool>,
        period_end: Option<DateTime<Utc>>,
        grace_days: Option<i32>,
        cancelled_at: Option<DateTime<Utc>>,
    ) -> Option<Period> {
        Some(Period { trial: trial?, period_end: period_end?, grace_days: grace_days?, cancelled_at })
    }
}

/// The status at `at` of a workgroup with `period` (none: no subscription): the rule of
/// `subscription_status()` in migrations/0012, for what the service remembers between
/// queries (`auth::cache`); a test holds the two to the same answers.
pub fn status_at(period: Option<&Period>, at: DateTime<Utc>) -> SubscriptionStatus {
    let Some(period) = period else { return SubscriptionStatus::None };
    let grace_end = period.period_end + chrono::Duration::seconds(86_400 * i64::from(period.grace_days));
    if period.cancelled_at.is_some_and(|cancelled| cancelled <= at) {
        SubscriptionStatus::Cancelled
    } else if at < period.period_end {
        if period.trial { SubscriptionStatus::Trial } else { SubscriptionStatus::Active }
    } else if at < grace_end {
        SubscriptionStatus::Grace
    } else {
        SubscriptionStatus::Lapsed
    }
}

/// Marks the routes of cloud features (`http/router.rs`): each caller's workgroup needs an
/// available subscription there. The authentication extractors read the mark and the access
/// guard (or, for scanners, the extractor itself) refuses — after the caller's standing in
/// the workgroup is known, so another tenant's status is never revealed.
#[derive(Debug, Clone, Copy)]
pub struct CloudFeature;

/// What a caller on a cloud feature's route carries to the access check: the moment the
/// subscription is judged at, and whom a refusal tells the customer to contact.
#[derive(Debug, Clone)]
pub struct Gate {
    pub now: DateTime<Utc>,
    contact: String,
}

impl Gate {
    /// The gate of the route being served, if it is a cloud feature's.
    pub fn of(parts: &axum::http::request::Parts, state: &crate::state::AppState) -> Option<Gate> {
        parts
            .extensions
            .get::<CloudFeature>()
            .map(|_| Gate { now: state.clock.now(), contact: state.config.subscriptions.contact.clone() })
    }

    /// Refuses a workgroup whose subscription (judged at `now`) is not available.
    pub fn check(&self, status: Option<SubscriptionStatus>) -> Result<(), crate::http::Error> {
        let status = status.unwrap_or(SubscriptionStatus::None);
        if status.available() {
            return Ok(());
        }
        Err(crate::http::Error::SubscriptionInactive { status, contact: self.contact.clone() })
    }
}

/// A workgroup's subscription as people see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    pub workgroup_id: Uuid,
    #[schema(example = "Northern Quarries Ltd")]
    pub workgroup_name: String,
    pub status: SubscriptionStatus,
    /// Whether the cloud features work now: trial, active or grace.
    pub features_available: bool,
    #[schema(example = "Fleet 25")]
    pub plan: Option<String>,
    /// Scanners (devices holding a live credential) the subscription covers; 0 without one.
    pub scanners: i32,
    /// Scanners of the workgroup holding a live credential.
    pub scanners_in_use: i64,
    pub trial: bool,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub grace_days: Option<i32>,
    /// The end of the grace after `period_end`: when the features stop unless renewed.
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Whole days (rounded up) until the period ends while active or in trial (the grace
    /// follows), until the grace ends while in grace. Null when the features are not available.
    pub days_left: Option<i64>,
    /// Whom to contact to subscribe or renew (`subscriptions.contact`).
    #[schema(example = "subscriptions@myscanner.example")]
    pub contact: String,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A checked statement reading [`Row`]s from `workgroups w LEFT JOIN subscriptions s`:
/// `query_subscriptions!(" WHERE …", now, args…)`; `$1` is the moment the status is judged at.
macro_rules! query_subscriptions {
    ($filter:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::subscriptions::Row,
            r#"SELECT w.id AS workgroup_id, w.name AS workgroup_name,
                      subscription_status(s, $1) AS "status!: crate::subscriptions::SubscriptionStatus",
                      s.plan AS "plan?", coalesce(s.scanners, 0) AS "scanners!",
                      (SELECT count(*) FROM device_credentials c WHERE c.workgroup_id = w.id AND c.revoked_at IS NULL)
                          AS "scanners_in_use!",
                      coalesce(s.trial, false) AS "trial!", s.period_start AS "period_start?",
                      s.period_end AS "period_end?", s.grace_days AS "grace_days?", s.cancelled_at,
                      s.updated_at AS "updated_at?"
               FROM workgroups w LEFT JOIN subscriptions s ON s.workgroup_id = w.id"# + $filter
            $(, $arg)*
        )
    };
}
pub(crate) use query_subscriptions;

#[derive(Debug)]
pub struct Row {
    workgroup_id: Uuid,
    workgroup_name: String,
    status: SubscriptionStatus,
    plan: Option<String>,
    scanners: i32,
    scanners_in_use: i64,
    trial: bool,
    period_start: Option<DateTime<Utc>>,
    period_end: Option<DateTime<Utc>>,
    grace_days: Option<i32>,
    cancelled_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl Row {
    pub fn id(&self) -> Uuid {
        self.workgroup_id
    }

    /// The subscription as seen at `now`.
    pub fn at(self, now: DateTime<Utc>, contact: &str) -> Subscription {
        let grace_ends_at =
            self.period_end.zip(self.grace_days).map(|(end, days)| end + chrono::Duration::days(i64::from(days)));
        let stops = match self.status {
            SubscriptionStatus::Trial | SubscriptionStatus::Active => self.period_end,
            SubscriptionStatus::Grace => grace_ends_at,
            _ => None,
        };
        let days_left = stops.map(|stops| ((stops - now).num_seconds().max(0) + 86_399) / 86_400);
        Subscription {
            workgroup_id: self.workgroup_id,
            workgroup_name: self.workgroup_name,
            status: self.status,
            features_available: self.status.available(),
            plan: self.plan,
            scanners: self.scanners,
            scanners_in_use: self.scanners_in_use,
            trial: self.trial,
            period_start: self.period_start,
            period_end: self.period_end,
            grace_days: self.grace_days,
            grace_ends_at,
            cancelled_at: self.cancelled_at,
            days_left,
            contact: contact.to_owned(),
            updated_at: self.updated_at,
        }
    }
}

/// The workgroup's subscription at `now`; `None` when the workgroup does not exist.
pub async fn fetch(db: &PgPool, workgroup_id: Uuid, now: DateTime<Utc>) -> sqlx::Result<Option<Row>> {
    query_subscriptions!(" WHERE w.id = $2", now, workgroup_id).fetch_optional(db).await
}
