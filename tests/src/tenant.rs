//! What tests set up through the API before they test something: operators, members,
//! provisioned devices, subscriptions, and a complete workgroup ([`Tenant`]).

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{TestApp, expect_json, uuid};

/// A workgroup set up through the API, with one site, one device and an admin.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub device_id: Uuid,
    /// The device's bearer credential.
    pub device_credential: String,
    /// A member with every permission, signed in.
    pub admin_token: String,
    pub admin_id: Uuid,
    /// A read-only API token of the workgroup.
    pub api_token: String,
    pub api_token_id: Uuid,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl Tenant {
    /// A path under the tenant's workgroup: `t.path("/measurements")` is
    /// `/api/v1/workgroups/{workgroup_id}/measurements`.
    pub fn path(&self, rest: &str) -> String {
        format!("/api/v1/workgroups/{}{rest}", self.workgroup_id)
    }
}

impl TestApp {
    /// A platform operator, signed in.
    pub async fn operator(&self) -> String {
        self.operator_named(&format!("operator-{}@example.com", Uuid::new_v4().simple()), "Operator").await
    }

    /// A platform operator with this e-mail and name (password [`PASSWORD`]), signed in.
    pub async fn operator_named(&self, email: &str, name: &str) -> String {
        myscanner::admin::create_operator(
            &self.db,
            email,
            name,
            Some(PASSWORD.into()),
            myscanner::admin::Existing::Refuse,
        )
        .await
        .unwrap();
        self.login(email, PASSWORD).await
    }

    /// Adds a new person to a workgroup with `permissions` and returns their id and token.
    pub async fn member(&self, manager_token: &str, workgroup_id: Uuid, permissions: &[&str]) -> (Uuid, String) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .post(
                &format!("/api/v1/workgroups/{workgroup_id}/members"),
                manager_token,
                json!({"email": email, "name": "Test User", "password": PASSWORD, "permissions": permissions}),
            )
            .await;
        let member = expect_json(response, StatusCode::CREATED).await;
        (uuid(&member["user_id"]), self.login(&email, PASSWORD).await)
    }

    /// Provisions a device into a site (as an operator) and returns its id and credential.
    pub async fn provision(&self, operator: &str, workgroup_id: Uuid, site_id: Uuid, kind: &str) -> (Uuid, String) {
        let serial = format!("T-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let response = self
            .post(
                &format!("/api/v1/workgroups/{workgroup_id}/devices"),
                operator,
                json!({"site_id": site_id, "kind": kind, "serial": serial, "name": "Test scanner"}),
            )
            .await;
        let provisioned = expect_json(response, StatusCode::CREATED).await;
        (uuid(&provisioned["device"]["id"]), provisioned["credential"]["secret"].as_str().unwrap().to_owned())
    }

    /// Gives the workgroup (as an operator) a subscription for `scanners` scanners, from
    /// now for a year by the service's clock; returns it.
    pub async fn subscribe(&self, operator: &str, workgroup_id: Uuid, scanners: i32) -> Value {
        let body = json!({
            "plan": "Fleet",
            "scanners": scanners,
            "period_start": self.clock.now(),
            "period_end": self.clock.now() + chrono::Duration::days(365),
        });
        let response = self.put(&format!("/api/v1/workgroups/{workgroup_id}/subscription"), operator, body).await;
        assert!(response.status().is_success(), "subscribe: {}", response.status());
        response.json().await.unwrap()
    }

    /// A complete workgroup, set up through the API the way an operator and its admin would,
    /// with a year's subscription for ten scanners.
    pub async fn tenant(&self, operator: &str, name: &str) -> Tenant {
        let workgroup =
            expect_json(self.post("/api/v1/workgroups", operator, json!({"name": name})).await, StatusCode::CREATED)
                .await;
        let workgroup_id = uuid(&workgroup["id"]);
        self.subscribe(operator, workgroup_id, 10).await;
        let (admin_id, admin_token) =
            self.member(operator, workgroup_id, &["view_data", "control_devices", "manage_workgroup"]).await;
        let site = expect_json(
            self.post(
                &format!("/api/v1/workgroups/{workgroup_id}/sites"),
                &admin_token,
                json!({"name": format!("{name} site"), "time_zone": "Europe/London"}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        let site_id = uuid(&site["id"]);
        let (device_id, device_credential) = self.provision(operator, workgroup_id, site_id, "lvs").await;
        let token = expect_json(
            self.post(&format!("/api/v1/workgroups/{workgroup_id}/api-tokens"), &admin_token, json!({"name": "ERP"}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        Tenant {
            workgroup_id,
            site_id,
            device_id,
            device_credential,
            admin_token,
            admin_id,
            api_token: token["secret"].as_str().unwrap().to_owned(),
            api_token_id: uuid(&token["id"]),
        }
    }
}
