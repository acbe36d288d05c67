//! Subscriptions: cloud features stop while a workgroup's subscription is lapsed, cancelled
//! or missing, and work again once it is renewed; ingest goes on and nothing is lost. The
//! service's clock is the test's, so period ends and grace are walked through, not waited for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use myscanner_tests::{Tenant, TestApp, eventually, expect_json, expect_problem};
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

fn subscription_path(t: &Tenant) -> String {
    format!("/api/v1/workgroups/{}/subscription", t.workgroup_id)
}

/// Gives the tenant a subscription ending at `end` (14 days' grace), started a year before.
async fn subscription_ending(app: &TestApp, operator: &str, t: &Tenant, end: DateTime<Utc>) -> Value {
    let body = json!({"plan": "Fleet", "scanners": 10, "period_start": end - chrono::Duration::days(365),
        "period_end": end, "grace_days": 14});
    expect_json(app.put(&subscription_path(t), operator, body).await, StatusCode::OK).await
}

async fn status(app: &TestApp, t: &Tenant) -> Value {
    expect_json(app.get(&subscription_path(t), &t.admin_token).await, StatusCode::OK).await
}

fn measurements_path(t: &Tenant) -> String {
    format!("/api/v1/workgroups/{}/measurements", t.workgroup_id)
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
                let cancel = app.post(&format!("{}/cancel", subscription_path(&t)), &operator, json!(null)).await;
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
async fn grace_and_lapse_follow_the_period_end_to_the_second() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let end = at("2027-03-01T00:00:00Z");
    app.clock.set(at("2026-12-01T00:00:00Z"));
    subscription_ending(&app, &operator, &t, end).await;
    let reads = async |expected: StatusCode| {
        let response = app.get(&measurements_path(&t), &t.api_token).await;
        assert_eq!(response.status(), expected, "at {}", app.clock.now());
        response
    };

    app.clock.set(end - chrono::Duration::seconds(1));
    let active = status(&app, &t).await;
    assert_eq!((active["status"].as_str(), active["days_left"].as_i64()), (Some("active"), Some(1)));
    assert_eq!(active["grace_ends_at"], "2027-03-15T00:00:00Z");
    reads(StatusCode::OK).await;

    // At the period's end: grace, and everything still works, with the days left shown.
    app.clock.set(end);
    let grace = status(&app, &t).await;
    assert_eq!((grace["status"].as_str(), grace["days_left"].as_i64()), (Some("grace"), Some(14)));
    assert_eq!(grace["features_available"], true);
    reads(StatusCode::OK).await;
    app.clock.set(end + chrono::Duration::days(14) - chrono::Duration::seconds(1));
    assert_eq!(status(&app, &t).await["days_left"], 1);
    reads(StatusCode::OK).await;

    // At the grace's end: lapsed.
    app.clock.set(end + chrono::Duration::days(14));
    let lapsed = status(&app, &t).await;
    assert_eq!((lapsed["status"].as_str(), lapsed["features_available"].as_bool()), (Some("lapsed"), Some(false)));
    assert!(lapsed["days_left"].is_null());
    let problem = expect_problem(
        reads(StatusCode::PAYMENT_REQUIRED).await,
        StatusCode::PAYMENT_REQUIRED,
        "subscription-inactive",
    )
    .await;
    assert_eq!(problem["subscription_status"], "lapsed");
    assert!(problem["detail"].as_str().unwrap().contains("your MyScanner vendor"), "{problem}");

    // A renewal in grace or after starts a new period then; one before the end extends it.
    let renewal = json!({"period_end": "2028-03-01T00:00:00Z"});
    let renewed =
        expect_json(app.post(&format!("{}/renew", subscription_path(&t)), &operator, renewal).await, StatusCode::OK)
            .await;
    assert_eq!(renewed["period_start"], "2027-03-15T00:00:00Z");
    reads(StatusCode::OK).await;

    // A trial says so; a cancellation stops everything at once.
    let trial = json!({"plan": "Trial", "scanners": 2, "trial": true, "period_end": "2027-04-15T00:00:00Z"});
    assert_eq!(
        expect_json(app.put(&subscription_path(&t), &operator, trial).await, StatusCode::OK).await["status"],
        "trial"
    );
    let cancelled = expect_json(
        app.post(&format!("{}/cancel", subscription_path(&t)), &operator, json!(null)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    let problem = expect_problem(
        reads(StatusCode::PAYMENT_REQUIRED).await,
        StatusCode::PAYMENT_REQUIRED,
        "subscription-inactive",
    )
    .await;
    assert_eq!(problem["subscription_status"], "cancelled");
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
        app.get(&measurements_path(&t), &t.admin_token).await,
        StatusCode::PAYMENT_REQUIRED,
        "subscription-inactive",
    )
    .await;
    assert_eq!(problem["subscription_status"], "none");
    // Members, tokens and devices are managed as ever.
    app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    let token = app
        .post(&format!("/api/v1/workgroups/{}/api-tokens", t.workgroup_id), &t.admin_token, json!({"name": "BI"}))
        .await;
    assert_eq!(token.status(), StatusCode::CREATED);
    let device = format!("/api/v1/workgroups/{}/devices/{}", t.workgroup_id, t.device_id);
    expect_json(app.patch(&device, &t.admin_token, json!({"name": "Renamed"})).await, StatusCode::OK).await;
    // Another workgroup's caller learns nothing of it: 404, not the subscription.
    let other = app.tenant(&operator, "Other").await;
    let response = app.get(&measurements_path(&t), &other.admin_token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn provisioning_beyond_the_covered_scanners_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    app.subscribe(&operator, t.workgroup_id, 2).await;
    let (second, _) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    let devices = format!("/api/v1/workgroups/{}/devices", t.workgroup_id);
    let third = json!({"site_id": t.site_id, "kind": "lvs", "serial": "OVER-1", "name": "One too many"});
    let problem = expect_problem(
        app.post(&devices, &operator, third.clone()).await,
        StatusCode::PAYMENT_REQUIRED,
        "scanner-limit-reached",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("covers 2 scanners"), "{problem}");
    assert_eq!(status(&app, &t).await["scanners_in_use"], 2);

    // A scanner taken out of service (its credential revoked) frees its place...
    let revoke = format!("{devices}/{second}/credentials/revoke");
    assert_eq!(app.post(&revoke, &t.admin_token, json!(null)).await.status(), StatusCode::NO_CONTENT);
    expect_json(app.post(&devices, &operator, third).await, StatusCode::CREATED).await;
    // ...and taking it back into service needs one.
    let rotate = format!("{devices}/{second}/credentials/rotate");
    expect_problem(
        app.post(&rotate, &t.admin_token, json!(null)).await,
        StatusCode::PAYMENT_REQUIRED,
        "scanner-limit-reached",
    )
    .await;
    // Rotating a scanner that holds a credential never counts twice.
    let rotate = format!("{devices}/{}/credentials/rotate", t.device_id);
    expect_json(app.post(&rotate, &t.admin_token, json!(null)).await, StatusCode::CREATED).await;
}

/// Provisionings at once never take a workgroup past its covered scanners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_provisionings_stay_within_the_covered_scanners() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    app.subscribe(&operator, t.workgroup_id, 3).await;
    let devices = format!("/api/v1/workgroups/{}/devices", t.workgroup_id);
    let attempts = (0..6).map(|i| {
        let body = json!({"site_id": t.site_id, "kind": "lvs", "serial": format!("RACE-{i}"), "name": "Racer"});
        app.post(&devices, &operator, body)
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts).await.iter().map(|r| r.status()).collect();
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!((created, refused), (2, 4), "{statuses:?}");
    assert_eq!(status(&app, &t).await["scanners_in_use"], 3);
}

#[tokio::test]
async fn every_change_is_kept_with_who_made_it_and_when() {
    let app = TestApp::spawn().await;
    let operator_email = format!("ops-{}@example.com", Uuid::new_v4().simple());
    let operator = app.operator_named(&operator_email, "Ops").await;
    let group =
        expect_json(app.post("/api/v1/workgroups", &operator, json!({"name": "Fresh"})).await, StatusCode::CREATED)
            .await;
    let workgroup_id: Uuid = group["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/workgroups/{workgroup_id}/subscription");
    let end = app.clock.now() + chrono::Duration::days(90);
    let create = json!({"plan": "Fleet 5", "scanners": 5, "period_end": end});
    let created = expect_json(app.put(&path, &operator, create).await, StatusCode::CREATED).await;
    assert_eq!((created["status"].as_str(), created["grace_days"].as_i64()), (Some("active"), Some(14)));
    let longest = json!({"plan": "P".repeat(200), "scanners": 5, "period_end": end});
    expect_json(app.put(&path, &operator, longest).await, StatusCode::OK).await;
    let change = json!({"plan": "Fleet 25", "scanners": 25, "period_end": end, "grace_days": 30});
    expect_json(app.put(&path, &operator, change).await, StatusCode::OK).await;
    let renewal = json!({"period_end": end + chrono::Duration::days(365)});
    expect_json(app.post(&format!("{path}/renew"), &operator, renewal).await, StatusCode::OK).await;
    expect_json(app.post(&format!("{path}/cancel"), &operator, json!(null)).await, StatusCode::OK).await;
    expect_json(app.post(&format!("{path}/cancel"), &operator, json!(null)).await, StatusCode::OK).await;
    // The command line, as an operator at a terminal would.
    let config = app.config.subscriptions.clone();
    let renewal = myscanner::subscriptions::terms::Change::Renew(myscanner::subscriptions::terms::Renewal {
        period_end: end + chrono::Duration::days(400),
        plan: None,
        scanners: None,
    });
    myscanner::admin::subscription(&app.db, &config, workgroup_id, Some(renewal)).await.unwrap();

    let history = expect_json(app.get(&format!("{path}/history"), &operator).await, StatusCode::OK).await;
    let items = history["items"].as_array().unwrap();
    let actions: Vec<&str> = items.iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["renewed", "cancelled", "renewed", "changed", "changed", "created"],
        "newest first; a second cancel is no change"
    );
    assert_eq!(items[0]["actor"], "myscanner admin (command line)");
    assert!(items[0]["changed_by"].is_null());
    assert!(items[1..].iter().all(|c| c["actor"] == operator_email.as_str() && !c["changed_by"].is_null()));
    assert!(items[5]["before"].is_null());
    assert_eq!((items[3]["before"]["scanners"].as_i64(), items[3]["after"]["scanners"].as_i64()), (Some(5), Some(25)));
    assert!(items[1]["after"]["cancelled_at"].is_string());

    // Only operators change subscriptions; the workgroup's admin sees them and their history.
    let (_, admin) = app.member(&operator, workgroup_id, &["manage_workgroup"]).await;
    let body = json!({"plan": "Free", "scanners": 1000, "period_end": "2099-01-01T00:00:00Z"});
    expect_problem(app.put(&path, &admin, body).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(
        app.post(&format!("{path}/renew"), &admin, json!({"period_end": "2099-01-01T00:00:00Z"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_json(app.get(&format!("{path}/history"), &admin).await, StatusCode::OK).await;
    let (_, viewer) = app.member(&operator, workgroup_id, &["view_data"]).await;
    expect_json(app.get(&path, &viewer).await, StatusCode::OK).await;
    expect_problem(app.get(&format!("{path}/history"), &viewer).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(app.get("/api/v1/subscriptions", &admin).await, StatusCode::FORBIDDEN, "forbidden").await;

    // Bad terms are refused with every field named, and change nothing.
    let bad = json!({"plan": " ", "scanners": -1, "period_start": "2099-01-01T00:00:00Z", "period_end": "2020-01-01T00:00:00Z", "grace_days": 400});
    let problem =
        expect_problem(app.put(&path, &operator, bad).await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed")
            .await;
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["plan", "scanners", "period_start", "period_end", "grace_days"]);
    let history = expect_json(app.get(&format!("{path}/history"), &operator).await, StatusCode::OK).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_workgroup_starts_with_the_subscription_it_is_given_or_none() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let bare =
        expect_json(app.post("/api/v1/workgroups", &operator, json!({"name": "Bare"})).await, StatusCode::CREATED)
            .await;
    let path = format!("/api/v1/workgroups/{}/subscription", bare["id"].as_str().unwrap());
    assert_eq!(expect_json(app.get(&path, &operator).await, StatusCode::OK).await["status"], "none");

    let end = app.clock.now() + chrono::Duration::days(30);
    let body = json!({"name": "Trialling", "subscription": {"plan": "Trial", "scanners": 3, "trial": true, "period_end": end}});
    let group = expect_json(app.post("/api/v1/workgroups", &operator, body).await, StatusCode::CREATED).await;
    let path = format!("/api/v1/workgroups/{}/subscription", group["id"].as_str().unwrap());
    let subscription = expect_json(app.get(&path, &operator).await, StatusCode::OK).await;
    assert_eq!((subscription["status"].as_str(), subscription["scanners"].as_i64()), (Some("trial"), Some(3)));
    let history = expect_json(app.get(&format!("{path}/history"), &operator).await, StatusCode::OK).await;
    assert_eq!(history["items"][0]["action"], "created");

    // Bad terms: refused, naming the field, and no workgroup is left half made.
    let body =
        json!({"name": "Broken", "subscription": {"plan": "X", "scanners": 3, "period_end": "2000-01-01T00:00:00Z"}});
    let problem = expect_problem(
        app.post("/api/v1/workgroups", &operator, body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "subscription.period_end");
    let broken: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workgroups WHERE name = 'Broken'").fetch_one(&app.db).await.unwrap();
    assert_eq!(broken, 0);
}

#[tokio::test]
async fn operators_list_every_subscription_by_status_and_ending_soon() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let soon = app.tenant(&operator, "Ending soon").await;
    let later = app.tenant(&operator, "Ending later").await;
    let lapsed = app.tenant(&operator, "Lapsed").await;
    let now = app.clock.now();
    subscription_ending(&app, &operator, &soon, now + chrono::Duration::days(10)).await;
    subscription_ending(&app, &operator, &later, now + chrono::Duration::days(200)).await;
    subscription_ending(&app, &operator, &lapsed, now - chrono::Duration::days(20)).await;
    let bare =
        expect_json(app.post("/api/v1/workgroups", &operator, json!({"name": "Bare"})).await, StatusCode::CREATED)
            .await;

    let names = async |query: &str| -> Vec<String> {
        let page =
            expect_json(app.get(&format!("/api/v1/subscriptions{query}"), &operator).await, StatusCode::OK).await;
        page["items"].as_array().unwrap().iter().map(|s| s["workgroup_name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names("").await, ["Ending soon", "Ending later", "Lapsed", "Bare"]);
    assert_eq!(names("?ending_within_days=30").await, ["Ending soon"]);
    assert_eq!(names("?status=lapsed").await, ["Lapsed"]);
    assert_eq!(names("?status=none").await, ["Bare"]);
    assert_eq!(names("?status=active&limit=1").await, ["Ending soon"]);
    assert_eq!(bare["name"], "Bare");
    let page = expect_json(app.get("/api/v1/subscriptions?limit=2", &operator).await, StatusCode::OK).await;
    let next = page["next_cursor"].as_str().unwrap();
    assert_eq!(names(&format!("?limit=2&cursor={next}")).await, ["Lapsed", "Bare"]);
    let response = app.get("/api/v1/subscriptions?ending_within_days=0", &operator).await;
    expect_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
}

#[tokio::test]
async fn weekly_scans_skip_workgroups_whose_subscription_had_lapsed() {
    use myscanner::security::schedule;
    let app = TestApp::spawn_with(|c| c.security.scheduler = false).await;
    let operator = app.operator().await;
    let active = app.tenant(&operator, "Active").await;
    let lapsed = app.tenant(&operator, "Lapsed").await;
    app.clock.set(at("2026-10-01T00:00:00Z"));
    subscription_ending(&app, &operator, &lapsed, at("2026-11-10T00:00:00Z")).await; // grace ends 11-24
    for t in [&active, &lapsed] {
        let path = format!("/api/v1/workgroups/{}/security/devices/{}/external", t.workgroup_id, t.device_id);
        assert_eq!(app.put(&path, &t.admin_token, json!({"enabled": true})).await.status(), StatusCode::NO_CONTENT);
    }
    let jobs = async |t: &Tenant| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM security_scan_jobs WHERE workgroup_id = $1 AND origin = 'weekly'")
            .bind(t.workgroup_id)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    // Each Saturday's scans ran before the next (a waiting scan is never doubled).
    let weekly = async |slot: &str| {
        let enqueued = schedule::enqueue_due(&app.db, at(slot)).await.unwrap();
        sqlx::query("UPDATE security_scan_jobs SET state = 'succeeded', finished_at = now() WHERE state = 'queued'")
            .execute(&app.db)
            .await
            .unwrap();
        enqueued
    };
    // In grace on the Saturday: enqueued. Lapsed on the next: skipped, its settings kept.
    assert_eq!(weekly("2026-11-21T00:00:00Z").await, 2);
    assert_eq!(weekly("2026-11-28T00:00:00Z").await, 1);
    assert_eq!((jobs(&active).await, jobs(&lapsed).await), (2, 1));
    // Renewed: the next Saturday has it again.
    app.clock.set(at("2026-12-01T00:00:00Z"));
    let renewal = json!({"period_end": "2027-12-01T00:00:00Z"});
    expect_json(app.post(&format!("{}/renew", subscription_path(&lapsed)), &operator, renewal).await, StatusCode::OK)
        .await;
    assert_eq!(weekly("2026-12-05T00:00:00Z").await, 2);
    assert_eq!(jobs(&lapsed).await, 2);
    // Cancelled after a Saturday the service missed: its catch-up leaves it out.
    app.clock.set(at("2026-12-14T00:00:00Z"));
    let cancel = app.post(&format!("{}/cancel", subscription_path(&active)), &operator, json!(null)).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(weekly("2026-12-17T00:00:00Z").await, 1);
    assert_eq!(jobs(&active).await, 3);
}

#[tokio::test]
async fn measurements_uploaded_during_a_lapse_are_stored_and_read_after_renewal() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let end = app.clock.now() + chrono::Duration::days(30);
    subscription_ending(&app, &operator, &t, end).await;
    app.clock.set(end + chrono::Duration::days(15));

    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.settings.measurement_transfer = true;
    let agent = myscanner_agent::Agent::start(config).await.expect("a lapsed scanner still starts");
    let cloud = agent.identity.cloud_features.clone().expect("agent/me tells the cloud features");
    assert!(!cloud.available && cloud.subscription_status == "lapsed", "{cloud:?}");
    assert!(cloud.message.contains("still stored"), "{}", cloud.message);
    let mut factory = myscanner_agent::simulate::MeasurementFactory::new(t.device_id, t.site_id, false);
    let sent: Vec<_> = (0..200).map(|_| factory.next(Utc::now())).collect();
    agent.record(&sent).unwrap();
    eventually(Duration::from_secs(20), "every measurement stored", || async { app.stored(t.device_id).await == 200 })
        .await;
    let refused = app.get(&measurements_path(&t), &t.api_token).await;
    expect_problem(refused, StatusCode::PAYMENT_REQUIRED, "subscription-inactive").await;

    let renewal = json!({"period_end": app.clock.now() + chrono::Duration::days(365)});
    expect_json(app.post(&format!("{}/renew", subscription_path(&t)), &operator, renewal).await, StatusCode::OK).await;
    let page =
        expect_json(app.get(&format!("{}?limit=500", measurements_path(&t)), &t.api_token).await, StatusCode::OK).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 200);
    let me = expect_json(app.get("/api/v1/agent/me", &t.device_credential).await, StatusCode::OK).await;
    assert_eq!(me["cloud_features"]["available"], true);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_remote_sessions_end_when_the_subscription_stops() {
    use myscanner_tests::remote::{self, close_reason, echo, echo_server, session_url};
    let app = TestApp::spawn_with(|c| c.remote.heartbeat_secs = 1).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.settings.allow_remote_control = true;
    config.remote_control_target = echo_server().await;
    config.cloud_recheck_secs = 1;
    let agent = myscanner_agent::Agent::start(config).await.unwrap();
    let online = async || {
        eventually(Duration::from_secs(15), "the scanner's tunnel", || async {
            let path = format!("/api/v1/workgroups/{}/remote/online", t.workgroup_id);
            let response = app.get(&path, &t.admin_token).await;
            response.status() == StatusCode::OK
                && response.json::<Value>().await.unwrap().as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    };
    online().await;
    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);

    // Cancelled: the session ends at once, and new ones are refused.
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"x").await, b"x");
    expect_json(app.post(&format!("{}/cancel", subscription_path(&t)), &operator, json!(null)).await, StatusCode::OK)
        .await;
    assert_eq!(close_reason(&mut session).await, "subscription_inactive");
    match remote::open(&url, &t.admin_token, &app.tls).await {
        Err((status, problem)) => {
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
            assert_eq!(problem["type"], "urn:myscanner:problem:subscription-inactive");
        }
        Ok(_) => panic!("a session opened without a subscription"),
    }

    // Renewed: the scanner's tunnel comes back. Then the period and grace run out: the
    // heartbeat ends the session at the lapse.
    let end = app.clock.now() + chrono::Duration::days(30);
    let renewal = json!({"period_end": end});
    expect_json(app.post(&format!("{}/renew", subscription_path(&t)), &operator, renewal).await, StatusCode::OK).await;
    online().await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"y").await, b"y");
    app.clock.set(end + chrono::Duration::days(14));
    assert_eq!(close_reason(&mut session).await, "subscription_inactive");

    let audit = format!("/api/v1/workgroups/{}/remote-sessions", t.workgroup_id);
    eventually(Duration::from_secs(10), "both ends audited", || async {
        let page = expect_json(app.get(&audit, &t.admin_token).await, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap().clone();
        items.len() == 2 && items.iter().all(|s| s["close_reason"] == "subscription_inactive")
    })
    .await;
    agent.stop().await;
}

/// A session reaching the tunnel through another replica ends for the lapse, recorded as such
/// (not as the tunnel's loss: the tunnel closes only once no session rides it).
#[tokio::test(flavor = "multi_thread")]
async fn a_session_relayed_between_replicas_ends_for_the_lapse() {
    use myscanner_tests::remote::{self, close_reason, echo, echo_server, session_url};
    let app = TestApp::spawn_with(|c| c.remote.heartbeat_secs = 1).await;
    let replica = app.spawn_replica().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let end = app.clock.now() + chrono::Duration::days(30);
    subscription_ending(&app, &operator, &t, end).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.settings.allow_remote_control = true;
    config.remote_control_target = echo_server().await;
    let agent = myscanner_agent::Agent::start(config).await.unwrap();
    let url = session_url(&replica.base_url, t.workgroup_id, t.device_id);
    // Once the replica holding the tunnel has registered it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let session = loop {
        if let Ok(session) = remote::open(&url, &t.admin_token, &app.tls).await {
            break Some(session);
        }
        assert!(std::time::Instant::now() < deadline, "no session through the other replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut session = session.unwrap();
    assert_eq!(echo(&mut session, b"z").await, b"z");
    app.clock.set(end + chrono::Duration::days(14));
    assert_eq!(close_reason(&mut session).await, "subscription_inactive");
    let audit = format!("/api/v1/workgroups/{}/remote-sessions", t.workgroup_id);
    eventually(Duration::from_secs(10), "the end audited", || async {
        let page = expect_json(app.get(&audit, &t.admin_token).await, StatusCode::OK).await;
        page["items"][0]["close_reason"] == "subscription_inactive"
    })
    .await;
    // And then the scanner's tunnel closes: it is offline until renewed.
    eventually(Duration::from_secs(10), "the tunnel closed", || async {
        let online: i64 = sqlx::query_scalar("SELECT count(*) FROM device_tunnels").fetch_one(&app.db).await.unwrap();
        online == 0
    })
    .await;
    agent.stop().await;
}

/// A lapsed scanner's sync asks once per recheck interval, not at the pace of failures.
#[tokio::test]
async fn a_lapsed_scanner_backs_off_its_cloud_features_and_says_why() {
    let logs = myscanner_tests::logs::Logs::capture();
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    expect_json(app.post(&format!("{}/cancel", subscription_path(&t)), &operator, json!(null)).await, StatusCode::OK)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.settings.load_list_sync = true;
    config.sync_dir = Some(dir.path().join("sync"));
    let agent = myscanner_agent::Agent::start(config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(logs.lines_with("cloud feature paused").len(), 1, "{}", logs.text());
    assert!(logs.lines_with("cloud features are paused").len() == 1, "the agent says why at start: {}", logs.text());
    assert!(logs.lines_with("sync failed").is_empty(), "{}", logs.text());
    agent.stop().await;
}

/// What replicas remember of a subscription is judged in Rust at each request; the database
/// judges it in SQL (lists, the weekly enqueue, the heartbeat). Both give the same answers,
/// on every boundary.
#[tokio::test]
async fn the_service_and_the_database_judge_a_subscription_alike() {
    use myscanner::subscriptions::{Period, SubscriptionStatus, status_at};
    let app = TestApp::spawn().await;
    let end = at("2027-03-01T00:00:00Z");
    let second = chrono::Duration::seconds(1);
    let day = chrono::Duration::days(1);
    let moments = [end - day, end - second, end, end + second, end + day * 14 - second, end + day * 14, end + day * 40];
    let mut periods = vec![None];
    for (trial, grace_days, cancelled_at) in [
        (false, 14, None),
        (true, 14, None),
        (false, 0, None),
        (false, 14, Some(end - day)),
        (true, 7, Some(end + day)),
    ] {
        periods.push(Some(Period { trial, period_end: end, grace_days, cancelled_at }));
    }
    for period in &periods {
        for moment in moments {
            let database: SubscriptionStatus = match period {
                None => sqlx::query_scalar("SELECT subscription_status(NULL::subscriptions, $1)").bind(moment),
                Some(p) => sqlx::query_scalar(
                    "SELECT subscription_status(ROW(gen_random_uuid(), 'Plan', 1, $2, $3 - interval '1 year', $3, $4, $5,
                         now())::subscriptions, $1)",
                )
                .bind(moment)
                .bind(p.trial)
                .bind(p.period_end)
                .bind(p.grace_days)
                .bind(p.cancelled_at),
            }
            .fetch_one(&app.db)
            .await
            .unwrap();
            assert_eq!(status_at(period.as_ref(), moment), database, "{period:?} at {moment}");
        }
    }
}
