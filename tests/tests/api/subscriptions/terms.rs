//! The terms of a subscription: set, renewed and cancelled by operators (through the API
//! and `myscanner admin`), judged to the second by the service's clock and alike by the
//! database, kept with who changed them, and the scanners they cover.

use chrono::{DateTime, Utc};
use myscanner_tests::{Tenant, TestApp, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{at, read_measurements, status, subscription_ending};

/// A tenant whose subscription ends on 1 March 2027 (14 days' grace), on 1 December 2026 by
/// the service's clock; with the operator's token and the end.
async fn ending_on_the_first_of_march() -> (TestApp, String, Tenant, DateTime<Utc>) {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let end = at("2027-03-01T00:00:00Z");
    app.clock.set(at("2026-12-01T00:00:00Z"));
    subscription_ending(&app, &operator, &t, end).await;
    (app, operator, t, end)
}

#[tokio::test]
async fn grace_and_lapse_follow_the_period_end_to_the_second() {
    let (app, _, t, end) = ending_on_the_first_of_march().await;
    let reads = async |expected| read_measurements(&app, &t, expected).await;

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
}

/// A renewal in grace or after starts a new period then (one before the end extends it).
#[tokio::test]
async fn a_renewal_after_the_period_end_starts_a_new_period_then() {
    let (app, operator, t, end) = ending_on_the_first_of_march().await;
    app.clock.set(end + chrono::Duration::days(14));
    read_measurements(&app, &t, StatusCode::PAYMENT_REQUIRED).await;
    let renewal = json!({"period_end": "2028-03-01T00:00:00Z"});
    let renewed = expect_json(app.post(&t.path("/subscription/renew"), &operator, renewal).await, StatusCode::OK).await;
    assert_eq!(renewed["period_start"], "2027-03-15T00:00:00Z");
    read_measurements(&app, &t, StatusCode::OK).await;
}

#[tokio::test]
async fn a_trial_says_so_and_a_cancellation_stops_everything_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    app.clock.set(at("2027-03-15T00:00:00Z"));
    let trial = json!({"plan": "Trial", "scanners": 2, "trial": true, "period_end": "2027-04-15T00:00:00Z"});
    assert_eq!(
        expect_json(app.put(&t.path("/subscription"), &operator, trial).await, StatusCode::OK).await["status"],
        "trial"
    );
    let cancelled =
        expect_json(app.post(&t.path("/subscription/cancel"), &operator, json!(null)).await, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    let problem = expect_problem(
        read_measurements(&app, &t, StatusCode::PAYMENT_REQUIRED).await,
        StatusCode::PAYMENT_REQUIRED,
        "subscription-inactive",
    )
    .await;
    assert_eq!(problem["subscription_status"], "cancelled");
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
}

/// Only operators change subscriptions; the workgroup's admin sees them and their history.
#[tokio::test]
async fn only_operators_change_subscriptions() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (workgroup_id, path) = (t.workgroup_id, t.path("/subscription"));
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
}

/// How many changes the tenant's subscription history holds.
async fn changes(app: &TestApp, operator: &str, t: &Tenant) -> usize {
    let history = expect_json(app.get(&t.path("/subscription/history"), operator).await, StatusCode::OK).await;
    history["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_terms_are_refused_with_every_field_named_and_change_nothing() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let path = t.path("/subscription");
    let before = changes(&app, &operator, &t).await;
    let bad = json!({"plan": " ", "scanners": -1, "period_start": "2099-01-01T00:00:00Z", "period_end": "2020-01-01T00:00:00Z", "grace_days": 400});
    let problem =
        expect_problem(app.put(&path, &operator, bad).await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed")
            .await;
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["plan", "scanners", "period_start", "period_end", "grace_days"]);
    assert_eq!(changes(&app, &operator, &t).await, before);
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
async fn provisioning_beyond_the_covered_scanners_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    app.subscribe(&operator, t.workgroup_id, 2).await;
    let (second, _) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    let devices = t.path("/devices");
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
    let devices = t.path("/devices");
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
