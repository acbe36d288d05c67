//! Subscriptions: cloud features stop while a workgroup's subscription is lapsed, cancelled
//! or missing, and work again once it is renewed; ingest goes on and nothing is lost. The
//! service's clock is the test's, so period ends and grace are walked through, not waited for.
//!
//! Here: which operations are cloud features (the walker over every route) and what stays
//! available. `subscriptions/terms.rs`: the terms operators set, how they are judged over time
//! and kept. `subscriptions/lapse.rs`: what a lapse does to scans, uploads, remote sessions
//! and agents.

mod lapse;
mod terms;

use chrono::{DateTime, Utc};
use myscanner_tests::{Tenant, TestApp, expect_json, expect_problem};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::tenancy::{body_for, fill_path, required_query};

/// Operations that stay available whatever the subscription: customers put things right
/// (members, tokens, devices, sites), see their subscription and past results, and scanners
/// are identified, report and upload. Every other operation must be a cloud feature: a new
/// route lands in one list or the other on purpose.
const ALWAYS_AVAILABLE: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /api/v1/openapi.json",
    "POST /api/v1/auth/login",
    "GET /api/v1/me",
    "PUT /api/v1/me/password",
    "GET /api/v1/workgroups",
    "POST /api/v1/workgroups",
    "GET /api/v1/workgroups/{workgroup_id}",
    "PATCH /api/v1/workgroups/{workgroup_id}",
    "GET /api/v1/workgroups/{workgroup_id}/sites",
    "POST /api/v1/workgroups/{workgroup_id}/sites",
    "GET /api/v1/workgroups/{workgroup_id}/sites/{site_id}",
    "PATCH /api/v1/workgroups/{workgroup_id}/sites/{site_id}",
    "DELETE /api/v1/workgroups/{workgroup_id}/sites/{site_id}",
    "GET /api/v1/workgroups/{workgroup_id}/members",
    "POST /api/v1/workgroups/{workgroup_id}/members",
    "GET /api/v1/workgroups/{workgroup_id}/members/{user_id}",
    "PATCH /api/v1/workgroups/{workgroup_id}/members/{user_id}",
    "DELETE /api/v1/workgroups/{workgroup_id}/members/{user_id}",
    "GET /api/v1/workgroups/{workgroup_id}/api-tokens",
    "POST /api/v1/workgroups/{workgroup_id}/api-tokens",
    "DELETE /api/v1/workgroups/{workgroup_id}/api-tokens/{token_id}",
    "GET /api/v1/workgroups/{workgroup_id}/devices",
    "POST /api/v1/workgroups/{workgroup_id}/devices",
    "GET /api/v1/workgroups/{workgroup_id}/devices/{device_id}",
    "PATCH /api/v1/workgroups/{workgroup_id}/devices/{device_id}",
    "POST /api/v1/workgroups/{workgroup_id}/devices/{device_id}/credentials/rotate",
    "POST /api/v1/workgroups/{workgroup_id}/devices/{device_id}/credentials/revoke",
    "GET /api/v1/workgroups/{workgroup_id}/subscription",
    "PUT /api/v1/workgroups/{workgroup_id}/subscription",
    "POST /api/v1/workgroups/{workgroup_id}/subscription/renew",
    "POST /api/v1/workgroups/{workgroup_id}/subscription/cancel",
    "GET /api/v1/workgroups/{workgroup_id}/subscription/history",
    "GET /api/v1/subscriptions",
    "GET /api/v1/workgroups/{workgroup_id}/security/devices",
    "PUT /api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}",
    "POST /api/v1/workgroups/{workgroup_id}/security/settings",
    "GET /api/v1/workgroups/{workgroup_id}/security/devices/{device_id}/{kind}/latest",
    "GET /api/v1/workgroups/{workgroup_id}/security-scans",
    "GET /api/v1/workgroups/{workgroup_id}/security-scans/findings",
    "GET /api/v1/workgroups/{workgroup_id}/remote-sessions",
    "POST /api/v1/workgroups/{workgroup_id}/remote-sessions/{session_id}/end",
    "GET /api/v1/agent/me",
    "PUT /api/v1/agent/settings",
    "POST /api/v1/agent/security-scans/claim",
    "POST /api/v1/agent/security-scans/{job_id}/heartbeat",
    "POST /api/v1/agent/security-scans/{job_id}/report",
    "GET /api/v1/ingest-rejections",
];

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Gives the tenant a subscription ending at `end` (14 days' grace), started a year before.
async fn subscription_ending(app: &TestApp, operator: &str, t: &Tenant, end: DateTime<Utc>) -> Value {
    let body = json!({"plan": "Fleet", "scanners": 10, "period_start": end - chrono::Duration::days(365),
        "period_end": end, "grace_days": 14});
    expect_json(app.put(&t.path("/subscription"), operator, body).await, StatusCode::OK).await
}

async fn status(app: &TestApp, t: &Tenant) -> Value {
    expect_json(app.get(&t.path("/subscription"), &t.admin_token).await, StatusCode::OK).await
}

/// The tenant's measurements as its API token reads them, answered with `expected`.
async fn read_measurements(app: &TestApp, t: &Tenant, expected: StatusCode) -> reqwest::Response {
    let response = app.get(&t.path("/measurements"), &t.api_token).await;
    assert_eq!(response.status(), expected, "at {}", app.clock.now());
    response
}

/// Every operation of the document, with the credentials it takes: each documented as a
/// cloud feature (402) is refused with `subscription-inactive` while the subscription is
/// lapsed, cancelled or missing, for every kind of caller, and answers once subscribed again;
/// every other one is on the list of those that stay available, and its reads answer.
#[tokio::test]
async fn every_cloud_feature_is_refused_while_inactive_and_answers_once_subscribed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let measurement =
        myscanner_agent::simulate::MeasurementFactory::new(t.device_id, t.site_id, false).next(Utc::now());
    app.insert_measurements(std::slice::from_ref(&measurement)).await;
    let spec = expect_json(app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    let session_id = Uuid::now_v7();

    let mut cloud_features = vec![];
    let mut always_available = vec![];
    let mut unlisted = vec![];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let gated = operation["responses"]["402"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("`subscription-inactive`"));
            if !gated {
                if !ALWAYS_AVAILABLE.contains(&name.as_str()) {
                    unlisted.push(name);
                } else if method == "get" {
                    always_available.push((method.to_uppercase(), path.clone(), operation.clone()));
                }
                continue;
            }
            assert!(!ALWAYS_AVAILABLE.contains(&name.as_str()), "{name} is documented as a cloud feature");
            cloud_features.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    assert!(unlisted.is_empty(), "neither a cloud feature nor listed as always available: {unlisted:?}");
    assert!(cloud_features.len() >= 15, "only {} cloud features", cloud_features.len());

    // Each of the operation's callers, answered as the subscription stands.
    let probe = async |method: &str, path: &str, operation: &Value| -> Vec<(String, StatusCode, Value)> {
        let schemes: Vec<String> = operation["security"]
            .as_array()
            .map(|s| s.iter().flat_map(|r| r.as_object().unwrap().keys().cloned()).collect())
            .unwrap_or_default();
        let mut answers = vec![];
        for scheme in schemes {
            let credential = match scheme.as_str() {
                "user_jwt" => &t.admin_token,
                "api_token" if method == "GET" => &t.api_token,
                "api_token" => continue, // refused as read-only before anything else
                _ => &t.device_credential,
            };
            let url =
                format!("{}{}", fill_path(path, &t, measurement.measurement_id, session_id), required_query(operation));
            let mut request = app.request(method.parse::<Method>().unwrap(), &url, Some(credential));
            if let Some(body) = body_for(&spec, operation, &t) {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = response.json::<Value>().await.unwrap_or_default();
            answers.push((format!("{scheme}: {method} {path}"), status, body));
        }
        answers
    };

    // Lapsed (the period ended more than 14 days ago), cancelled, and none at all.
    for state in ["lapsed", "cancelled", "none"] {
        match state {
            "lapsed" => {
                let end = app.clock.now() + chrono::Duration::days(30);
                subscription_ending(&app, &operator, &t, end).await;
                app.clock.set(end + chrono::Duration::days(14));
            }
            "cancelled" => {
                app.clock.resume();
                app.subscribe(&operator, t.workgroup_id, 10).await;
                let cancel = app.post(&t.path("/subscription/cancel"), &operator, json!(null)).await;
                assert_eq!(cancel.status(), StatusCode::OK);
            }
            _ => {
                let removed = sqlx::query("DELETE FROM subscriptions WHERE workgroup_id = $1");
                removed.bind(t.workgroup_id).execute(&app.db).await.unwrap();
                myscanner_tests::past_remembered_callers().await;
            }
        }
        let mut wrong = vec![];
        for (method, path, operation) in &cloud_features {
            for (who, status, body) in probe(method, path, operation).await {
                let refused = status == StatusCode::PAYMENT_REQUIRED
                    && body["type"] == "urn:myscanner:problem:subscription-inactive"
                    && body["subscription_status"] == state
                    && body["detail"].as_str().is_some_and(|d| d.contains("still stored"));
                if !refused {
                    wrong.push(format!("{who} -> {status}: {body}"));
                }
            }
        }
        assert!(wrong.is_empty(), "cloud features answered while {state}:\n{}", wrong.join("\n"));
        // What stays available answers as ever (its reads are probed; its writes are
        // tested where they live).
        for (method, path, operation) in &always_available {
            for (who, status, body) in probe(method, path, operation).await {
                assert!(
                    status != StatusCode::PAYMENT_REQUIRED && !status.is_server_error(),
                    "{who} while {state} -> {status}: {body}"
                );
            }
        }
    }

    // Subscribed again: none of them is refused for the subscription, nor fails otherwise.
    let renewed = app.subscribe(&operator, t.workgroup_id, 10).await;
    assert_eq!(renewed["status"], "active");
    for (method, path, operation) in &cloud_features {
        for (who, status, body) in probe(method, path, operation).await {
            let other_refusal = [StatusCode::PAYMENT_REQUIRED, StatusCode::NOT_FOUND, StatusCode::FORBIDDEN];
            assert!(
                !other_refusal.contains(&status) && !status.is_server_error(),
                "{who} after renewal -> {status}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn a_workgroup_without_a_subscription_keeps_its_management_but_not_its_cloud_features() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    sqlx::query("DELETE FROM subscriptions WHERE workgroup_id = $1")
        .bind(t.workgroup_id)
        .execute(&app.db)
        .await
        .unwrap();
    myscanner_tests::past_remembered_callers().await;
    assert_eq!(status(&app, &t).await["status"], "none");
    let problem = expect_problem(
        app.get(&t.path("/measurements"), &t.admin_token).await,
        StatusCode::PAYMENT_REQUIRED,
        "subscription-inactive",
    )
    .await;
    assert_eq!(problem["subscription_status"], "none");
    // Members, tokens and devices are managed as ever.
    app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    let token = app.post(&t.path("/api-tokens"), &t.admin_token, json!({"name": "BI"})).await;
    assert_eq!(token.status(), StatusCode::CREATED);
    let device = t.path(&format!("/devices/{}", t.device_id));
    expect_json(app.patch(&device, &t.admin_token, json!({"name": "Renamed"})).await, StatusCode::OK).await;
    // Another workgroup's caller learns nothing of it: 404, not the subscription.
    let other = app.tenant(&operator, "Other").await;
    let response = app.get(&t.path("/measurements"), &other.admin_token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
