//! What a caller may do in a workgroup: one guard used by every workgroup-scoped handler.
//!
//! A caller with no standing in a workgroup gets 404 — the same answer as for a workgroup
//! that does not exist — so ids of other tenants reveal nothing. Inside a workgroup, a missing
//! permission is a 403 naming it.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cache::Standing;
use super::principal::{Caller, CurrentUser};
use crate::http::Error;
use crate::subscriptions::{Gate, Period, SubscriptionStatus, status_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read measurements, load profiles and exports.
    ViewData,
    /// Remote control and Security Services.
    ControlDevices,
    /// Users, sites, devices and API tokens of the workgroup.
    ManageWorkgroup,
}

impl Permission {
    pub const ALL: [Permission; 3] = [Permission::ViewData, Permission::ControlDevices, Permission::ManageWorkgroup];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewData => "view_data",
            Permission::ControlDevices => "control_devices",
            Permission::ManageWorkgroup => "manage_workgroup",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A caller's standing in one workgroup.
#[derive(Debug, Clone)]
pub struct Access {
    pub workgroup_id: Uuid,
    permissions: Vec<Permission>,
    /// Whether the standing is a membership (else a platform operator's, or a token's).
    pub member: bool,
    /// On a cloud feature's route: the gate, and the workgroup's subscription status then.
    subscription: Option<(Gate, SubscriptionStatus)>,
}

impl Access {
    /// The permission, then — on a cloud feature's route — an available subscription: a
    /// viewer asking for remote control learns what they lack before what the workgroup does.
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        if !self.permissions.contains(&permission) {
            return Err(Error::Forbidden(permission.as_str()));
        }
        match &self.subscription {
            Some((gate, status)) => gate.check(Some(*status)),
            None => Ok(()),
        }
    }
}

impl CurrentUser {
    /// The user's permissions in `workgroup_id`. Platform operators manage every workgroup
    /// (they provision sites, devices and first admins) but read data and control scanners
    /// only where another operator made them members (docs/OPERATORS.md).
    /// On a cloud feature's route, the subscription's status comes along for `require`, which
    /// refuses (`subscription-inactive`) after the standing and the permission, so strangers
    /// learn nothing of it.
    pub async fn access(&self, db: &PgPool, workgroup_id: Uuid) -> Result<Access, Error> {
        let standing = self
            .cache
            .standings
            .get_or_load((self.id, workgroup_id), || async {
                let row = sqlx::query!(
                    r#"SELECT m.permissions AS "permissions?", s.trial AS "trial?", s.period_end AS "period_end?",
                              s.grace_days AS "grace_days?", s.cancelled_at
                       FROM workgroups w
                       LEFT JOIN memberships m ON m.workgroup_id = w.id AND m.user_id = $2
                       LEFT JOIN subscriptions s ON s.workgroup_id = w.id
                       WHERE w.id = $1"#,
                    workgroup_id,
                    self.id,
                )
                .fetch_optional(db)
                .await?;
                Ok::<_, Error>(row.map(|row| Standing {
                    permissions: row.permissions,
                    subscription: Period::from_outer_join(row.trial, row.period_end, row.grace_days, row.cancelled_at),
                }))
            })
            .await?
            .ok_or(Error::NotFound)?;
        let (granted, member) = match standing.permissions {
            Some(granted) => (granted, true),
            None if self.is_operator => (vec![], false),
            None => return Err(Error::NotFound),
        };
        // Judged at the request's moment, from what is remembered of the subscription.
        let subscription = self.gate.clone().map(|gate| {
            let status = status_at(standing.subscription.as_ref(), gate.now);
            (gate, status)
        });
        let mut permissions: Vec<Permission> = granted.iter().filter_map(|p| Permission::parse(p)).collect();
        if self.is_operator && !permissions.contains(&Permission::ManageWorkgroup) {
            permissions.push(Permission::ManageWorkgroup);
        }
        Ok(Access { workgroup_id, permissions, member, subscription })
    }
}

impl Caller {
    /// The caller's standing in `workgroup_id`; an API token only ever views its own.
    pub async fn access(&self, db: &PgPool, workgroup_id: Uuid) -> Result<Access, Error> {
        match self {
            Caller::User(user) => user.access(db, workgroup_id).await,
            Caller::ApiToken(token) if token.workgroup_id == workgroup_id => Ok(Access {
                workgroup_id,
                permissions: vec![Permission::ViewData],
                member: false,
                subscription: token.gate.clone(),
            }),
            Caller::ApiToken(_) => Err(Error::NotFound),
        }
    }
}
