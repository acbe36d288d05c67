//! Changing a subscription — create, change, renew, cancel — each in one transaction with
//! its line of history. The API and the `myscanner admin subscription` command both come here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::fields::Name;
use crate::http::{Error, Result, Validator};

/// Longest grace after a period, in days.
pub const MAX_GRACE_DAYS: i32 = 365;
/// Most scanners one subscription covers.
pub const MAX_SCANNERS: i32 = 100_000;

/// The terms of a subscription, as stored and as its history records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Terms {
    pub plan: String,
    pub scanners: i32,
    pub trial: bool,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub grace_days: i32,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// A subscription's terms, given whole (create, or change).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionFields {
    pub plan: Name,
    /// Scanners it covers.
    #[schema(minimum = 0, maximum = 100000)]
    pub scanners: i32,
    /// A trial period (default false).
    #[serde(default)]
    pub trial: bool,
    /// Default: now. Not in the future: a period counts from when it is given.
    pub period_start: Option<DateTime<Utc>>,
    /// After `period_start`.
    pub period_end: DateTime<Utc>,
    /// Days everything still works after `period_end` (default `subscriptions.grace_days`).
    #[schema(minimum = 0, maximum = 365)]
    pub grace_days: Option<i32>,
}

/// A renewal: the period is extended to `period_end` (while it runs) or a new one starts now.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// In the future.
    pub period_end: DateTime<Utc>,
    /// A new plan, if it changes.
    pub plan: Option<Name>,
    /// A new number of scanners, if it changes.
    #[schema(minimum = 0, maximum = 100000)]
    pub scanners: Option<i32>,
}

/// What an operator does to a subscription.
#[derive(Debug, Clone)]
pub enum Change {
    Set(SubscriptionFields),
    Renew(Renewal),
    Cancel,
}

/// Who made a change: an operator's account, or the command line.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub name: String,
}

impl Actor {
    /// A signed-in operator, as known by their e-mail address now.
    pub async fn operator<'e>(db: impl sqlx::PgExecutor<'e>, user_id: Uuid) -> Result<Actor> {
        let email = sqlx::query_scalar!("SELECT email FROM users WHERE id = $1", user_id).fetch_one(db).await?;
        Ok(Actor { user_id: Some(user_id), name: email })
    }

    pub fn command_line() -> Actor {
        Actor { user_id: None, name: "myscanner admin (command line)".to_owned() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Action {
    Created,
    Changed,
    Renewed,
    Cancelled,
}

/// Applies `change` to the workgroup's subscription at `now` and records it. `Ok(None)`:
/// nothing changed (cancelling what is already cancelled).
pub async fn apply(
    db: &PgPool,
    workgroup_id: Uuid,
    change: Change,
    actor: &Actor,
    now: DateTime<Utc>,
    default_grace_days: i32,
) -> Result<Option<Action>> {
    let mut tx = db.begin().await?;
    let action = apply_in(&mut tx, workgroup_id, change, actor, now, default_grace_days).await?;
    tx.commit().await?;
    Ok(action)
}

/// [`apply`] in the caller's transaction (a workgroup created with its subscription).
pub async fn apply_in(
    tx: &mut sqlx::PgConnection,
    workgroup_id: Uuid,
    change: Change,
    actor: &Actor,
    now: DateTime<Utc>,
    default_grace_days: i32,
) -> Result<Option<Action>> {
    // The workgroup's row serialises changes (and provisioning, which counts scanners).
    crate::workgroups::api::lock(tx, workgroup_id).await?;
    let before = sqlx::query_as!(
        Terms,
        "SELECT plan, scanners, trial, period_start, period_end, grace_days, cancelled_at
         FROM subscriptions WHERE workgroup_id = $1",
        workgroup_id,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some((action, after)) = next(before.as_ref(), change, now, default_grace_days)? else {
        return Ok(None);
    };
    sqlx::query!(
        "INSERT INTO subscriptions (workgroup_id, plan, scanners, trial, period_start, period_end, grace_days,
             cancelled_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (workgroup_id) DO UPDATE SET plan = $2, scanners = $3, trial = $4, period_start = $5,
             period_end = $6, grace_days = $7, cancelled_at = $8, updated_at = $9",
        workgroup_id,
        &after.plan,
        after.scanners,
        after.trial,
        after.period_start,
        after.period_end,
        after.grace_days,
        after.cancelled_at,
        now,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO subscription_changes (id, workgroup_id, action, changed_by, actor, changed_at, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        Uuid::now_v7(),
        workgroup_id,
        action as Action,
        actor.user_id,
        &actor.name,
        now,
        before.map(sqlx::types::Json) as _,
        sqlx::types::Json(&after) as _,
    )
    .execute(&mut *tx)
    .await?;
    tracing::info!(workgroup.id = %workgroup_id, action = ?action, actor = %actor.name, "subscription changed");
    Ok(Some(action))
}

/// The terms after `change`, and what the change was; a pure function of its inputs.
fn next(
    before: Option<&Terms>,
    change: Change,
    now: DateTime<Utc>,
    default_grace_days: i32,
) -> Result<Option<(Action, Terms)>> {
    match change {
        Change::Set(fields) => {
            let start = fields.period_start.unwrap_or(now);
            let grace_days = fields.grace_days.unwrap_or(default_grace_days);
            Validator::default()
                .name("plan", &fields.plan)
                .check((0..=MAX_SCANNERS).contains(&fields.scanners), "scanners", "must be 0–100000")
                .check(start <= now, "period_start", "must not be in the future")
                .check(fields.period_end > start, "period_end", "must be after period_start")
                .check((0..=MAX_GRACE_DAYS).contains(&grace_days), "grace_days", "must be 0–365")
                .finish()?;
            let terms = Terms {
                plan: fields.plan.trim().to_owned(),
                scanners: fields.scanners,
                trial: fields.trial,
                period_start: start,
                period_end: fields.period_end,
                grace_days,
                cancelled_at: None,
            };
            let action = if before.is_some() { Action::Changed } else { Action::Created };
            Ok(Some((action, terms)))
        }
        Change::Renew(renewal) => {
            let before = before.ok_or_else(no_subscription)?;
            let mut validator = Validator::default();
            if let Some(plan) = &renewal.plan {
                validator.name("plan", plan);
            }
            // A period that still runs is extended; otherwise a new one starts now.
            let running = before.cancelled_at.is_none_or(|at| at > now) && now < before.period_end;
            validator
                .check(renewal.scanners.is_none_or(|n| (0..=MAX_SCANNERS).contains(&n)), "scanners", "must be 0–100000")
                .check(renewal.period_end > now, "period_end", "must be in the future")
                .check(
                    !running || renewal.period_end >= before.period_end,
                    "period_end",
                    "a renewal does not shorten the running period; change its terms to do that",
                )
                .finish()?;
            let terms = Terms {
                plan: renewal.plan.map_or_else(|| before.plan.clone(), |p| p.trim().to_owned()),
                scanners: renewal.scanners.unwrap_or(before.scanners),
                trial: false,
                period_start: if running { before.period_start } else { now },
                period_end: renewal.period_end,
                grace_days: before.grace_days,
                cancelled_at: None,
            };
            Ok(Some((Action::Renewed, terms)))
        }
        Change::Cancel => {
            let before = before.ok_or_else(no_subscription)?;
            if before.cancelled_at.is_some_and(|at| at <= now) {
                return Ok(None);
            }
            Ok(Some((Action::Cancelled, Terms { cancelled_at: Some(now), ..before.clone() })))
        }
    }
}

fn no_subscription() -> Error {
    Error::conflict("no-subscription", "the workgroup has no subscription; create one first")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn terms(start: &str, end: &str) -> Terms {
        Terms {
            plan: "Fleet".into(),
            scanners: 5,
            trial: true,
            period_start: at(start),
            period_end: at(end),
            grace_days: 14,
            cancelled_at: None,
        }
    }

    fn renew(end: &str) -> Change {
        Change::Renew(Renewal { period_end: at(end), plan: None, scanners: None })
    }

    #[test]
    fn a_running_period_is_extended_and_a_lapsed_one_starts_again() {
        let before = terms("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let (action, after) =
            next(Some(&before), renew("2028-01-01T00:00:00Z"), at("2026-12-01T00:00:00Z"), 14).unwrap().unwrap();
        assert_eq!(action, Action::Renewed);
        assert_eq!((after.period_start, after.period_end), (before.period_start, at("2028-01-01T00:00:00Z")));
        assert!(!after.trial, "a renewal is not a trial");
        // A renewal does not shorten a running period.
        assert!(next(Some(&before), renew("2026-12-15T00:00:00Z"), at("2026-12-01T00:00:00Z"), 14).is_err());
        // In grace: the new period starts at the renewal.
        let now = at("2027-01-05T00:00:00Z");
        let (_, after) = next(Some(&before), renew("2028-01-01T00:00:00Z"), now, 14).unwrap().unwrap();
        assert_eq!(after.period_start, now);
    }

    #[test]
    fn cancelling_twice_changes_nothing_the_second_time() {
        let now = at("2026-06-01T00:00:00Z");
        let before = terms("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let (_, cancelled) = next(Some(&before), Change::Cancel, now, 14).unwrap().unwrap();
        assert_eq!(cancelled.cancelled_at, Some(now));
        assert!(next(Some(&cancelled), Change::Cancel, now, 14).unwrap().is_none());
        assert!(next(None, Change::Cancel, now, 14).is_err(), "nothing to cancel");
    }

    #[test]
    fn periods_must_start_by_now_and_end_after_they_start() {
        let now = at("2026-06-01T00:00:00Z");
        let fields = |start: &str, end: &str| SubscriptionFields {
            plan: Name("Fleet".into()),
            scanners: 3,
            trial: false,
            period_start: Some(at(start)),
            period_end: at(end),
            grace_days: None,
        };
        let set = |f| next(None, Change::Set(f), now, 14);
        assert!(set(fields("2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z")).is_err(), "starts in the future");
        assert!(set(fields("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")).is_err(), "ends as it starts");
        let (action, terms) = set(fields("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!((action, terms.grace_days), (Action::Created, 14));
    }
}
