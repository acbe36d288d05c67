//! Provisioning, device credentials, and what a scanner reports.

use std::time::Duration;

use myscanner_tests::{TestApp, eventually, expect_json, expect_problem, uuid};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SETTINGS: &str = "/api/v1/agent/settings";

fn report(app: &TestApp, credential: &str) -> reqwest::RequestBuilder {
    app.request(Method::PUT, SETTINGS, Some(credential)).json(&json!({
        "measurement_transfer": true,
        "allow_remote_control": false,
        "reference_scan_sync": true,
        "load_list_sync": false,
        "agent_version": "1.4.2"
    }))
}

#[tokio::test]
async fn a_provisioned_device_reports_its_settings() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;

    let me = expect_json(app.get("/api/v1/agent/me", &a.device_credential).await, StatusCode::OK).await;
    assert_eq!(uuid(&me["device_id"]), a.device_id);
    assert_eq!(uuid(&me["site_id"]), a.site_id);
    assert_eq!(me["site_time_zone"], "Europe/London");
    assert_eq!(me["settings"]["measurement_transfer"], false, "everything is off until the device reports");

    expect_json(report(&app, &a.device_credential).send().await.unwrap(), StatusCode::OK).await;
    let path = a.path(&format!("/devices/{}", a.device_id));
    let device = expect_json(app.get(&path, &a.admin_token).await, StatusCode::OK).await;
    assert_eq!(
        device["settings"],
        json!({"measurement_transfer": true, "allow_remote_control": false, "reference_scan_sync": true, "load_list_sync": false})
    );
    assert_eq!(device["agent_version"], "1.4.2");
    assert!(device["settings_reported_at"].is_string() && device["last_seen_at"].is_string());
    assert_eq!(device["public_address"], "127.0.0.1");

    let bad = app
        .request(Method::PUT, SETTINGS, Some(&a.device_credential))
        .json(&json!({"measurement_transfer": "yes"}))
        .send()
        .await
        .unwrap();
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let device_after = expect_json(app.get(&path, &a.admin_token).await, StatusCode::OK).await;
    assert_eq!(device_after["settings"], device["settings"], "bad input changes nothing");
}

#[tokio::test]
async fn rotating_and_revoking_device_credentials() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let base = a.path(&format!("/devices/{}/credentials", a.device_id));

    let rotated =
        expect_json(app.post(&format!("{base}/rotate"), &a.admin_token, json!({})).await, StatusCode::CREATED).await;
    let new_credential = rotated["secret"].as_str().unwrap();
    expect_problem(app.get("/api/v1/agent/me", &a.device_credential).await, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    assert_eq!(app.get("/api/v1/agent/me", new_credential).await.status(), StatusCode::OK);

    let revoke = app.post(&format!("{base}/revoke"), &a.admin_token, json!({})).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    expect_problem(app.get("/api/v1/agent/me", new_credential).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_problem(report(&app, new_credential).send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Stored hashed; never more than one live credential.
    let (live, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FROM device_credentials WHERE device_id = $1",
    )
    .bind(a.device_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((live, total), (0, 2));

    // Credentials of one kind do not open the doors of another.
    expect_problem(app.get("/api/v1/agent/me", &a.api_token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_problem(app.get("/api/v1/agent/me", &a.admin_token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_problem(app.get("/api/v1/me", &a.device_credential).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn provisioning_rules() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;
    let devices = a.path("/devices");
    let serial = expect_json(app.get(&format!("{devices}/{}", a.device_id), &a.admin_token).await, StatusCode::OK)
        .await["serial"]
        .clone();

    let taken = app
        .post(&devices, &operator, json!({"site_id": a.site_id, "kind": "mps", "serial": serial, "name": "Dup"}))
        .await;
    expect_problem(taken, StatusCode::CONFLICT, "serial-taken").await;
    let foreign_site = app
        .post(&devices, &operator, json!({"site_id": b.site_id, "kind": "mps", "serial": "NEW-1", "name": "X"}))
        .await;
    let problem = expect_problem(foreign_site, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "site_id");
    let bad = app
        .post(&devices, &operator, json!({"site_id": a.site_id, "kind": "xyz", "serial": "bad serial!", "name": ""}))
        .await;
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let bad = app
        .post(&devices, &operator, json!({"site_id": a.site_id, "kind": "mps", "serial": "bad serial!", "name": ""}))
        .await;
    let problem = expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let fields: Vec<_> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["serial", "name"], "every invalid field is named at once");

    // Rename and move within the workgroup; never into another one.
    let second_site = expect_json(
        app.post(&a.path("/sites"), &a.admin_token, json!({"name": "South", "time_zone": "UTC"})).await,
        StatusCode::CREATED,
    )
    .await;
    let device = format!("{devices}/{}", a.device_id);
    let moved = expect_json(
        app.patch(&device, &a.admin_token, json!({"name": "Renamed", "site_id": second_site["id"]})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!((moved["name"].as_str(), &moved["site_id"]), (Some("Renamed"), &second_site["id"]));
    let escape = app.patch(&device, &a.admin_token, json!({"site_id": b.site_id})).await;
    expect_problem(escape, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;

    // A site with devices cannot be deleted.
    let delete = app.delete(&a.path(&format!("/sites/{}", second_site["id"].as_str().unwrap())), &a.admin_token).await;
    expect_problem(delete, StatusCode::CONFLICT, "site-has-devices").await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    for (trusted, expected) in [(vec![], "127.0.0.1"), (vec!["127.0.0.0/8".parse().unwrap()], "203.0.113.9")] {
        let app = TestApp::spawn_with(|c| c.server.trusted_proxies = trusted).await;
        let operator = app.operator().await;
        let a = app.tenant(&operator, "Acme").await;
        let response = report(&app, &a.device_credential)
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .send()
            .await
            .unwrap();
        let device = expect_json(response, StatusCode::OK).await;
        assert_eq!(device["public_address"], expected);
    }
}

#[tokio::test]
async fn the_demo_writes_device_files_the_agent_runs_with_every_feature_on() {
    let app = TestApp::spawn().await;
    let broker = myscanner::broker::management::Management::new(&app.config.broker).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = myscanner::admin::DemoLink {
        api_url: Some(app.base_url.clone()),
        ca_file: Some(dir.path().join("ca \"dev\".pem")),
    };
    myscanner::admin::demo(&app.db, &broker, dir.path(), &link, Some("demo-password-123".into())).await.unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 3);
    for file in files {
        let config = myscanner_agent::config::DeviceConfig::load(&file).unwrap();
        assert_eq!(config.api_url, app.base_url);
        assert_eq!(config.ca_file, link.ca_file);
        assert_eq!(
            config.settings,
            myscanner_agent::api::Settings {
                measurement_transfer: true,
                allow_remote_control: true,
                reference_scan_sync: true,
                load_list_sync: true
            }
        );
        // And the service knows it by that credential; the demo's subscription runs.
        let me = expect_json(app.get("/api/v1/agent/me", &config.credential).await, StatusCode::OK).await;
        assert_eq!(me["cloud_features"]["available"], true, "{me}");
    }
    // Its owner renames the demo workgroup in the dashboard; the demo runs again (as
    // run.sh does at every start) and finds it by its scanners.
    sqlx::query("UPDATE workgroups SET name = 'Our quarries' WHERE name = 'Demo Quarries'")
        .execute(&app.db)
        .await
        .unwrap();
    myscanner::admin::demo(&app.db, &broker, dir.path(), &link, Some("demo-password-123".into())).await.unwrap();
    let workgroups: i64 = sqlx::query_scalar("SELECT count(*) FROM workgroups").fetch_one(&app.db).await.unwrap();
    assert_eq!(workgroups, 1, "no second demo workgroup");
}

#[tokio::test]
async fn a_body_is_an_object_and_time_zones_are_postgresql_s() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    // An array where an object is documented is refused, and changes nothing.
    let site = a.path(&format!("/sites/{}", a.site_id));
    let array = app
        .request(reqwest::Method::PATCH, &site, Some(&a.admin_token))
        .json(&json!(["renamed", null]))
        .send()
        .await
        .unwrap();
    expect_problem(array, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let sites = expect_json(app.get(&a.path("/sites"), &a.admin_token).await, StatusCode::OK).await;
    assert_ne!(sites["items"][0]["name"], "renamed");

    // Every zone the document lists is one the database can group days in.
    let known: std::collections::HashSet<String> = sqlx::query_scalar("SELECT name FROM pg_timezone_names")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let listed: Vec<&str> = myscanner::workgroups::sites::TIME_ZONES.lines().filter(|l| !l.is_empty()).collect();
    assert!(listed.len() > 400);
    let unknown: Vec<&&str> = listed.iter().filter(|zone| !known.contains(**zone)).collect();
    assert!(unknown.is_empty(), "not in pg_timezone_names: {unknown:?}");
    let bad =
        app.post(&a.path("/sites"), &a.admin_token, json!({"name": "X", "time_zone": "posix/Europe/London"})).await;
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
}

#[tokio::test]
async fn scanners_hold_few_long_polls_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;

    // Long polls: a few at once per scanner; more are refused at once, not queued.
    let claim = |credential: &str, wait: u32| {
        app.request(Method::POST, &format!("/api/v1/agent/security-scans/claim?wait={wait}"), Some(credential)).send()
    };
    let held: Vec<_> = (0..myscanner::auth::rate_limit::LONG_POLLS_PER_DEVICE)
        .map(|_| tokio::spawn(claim(&a.device_credential, 20)))
        .collect();
    eventually(Duration::from_secs(10), "the ninth long poll refused", || async {
        claim(&a.device_credential, 0).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert_eq!(claim(&b.device_credential, 0).await.unwrap().status(), StatusCode::NO_CONTENT, "scanners are apart");
    for poll in held {
        poll.abort();
    }
}

#[tokio::test]
async fn scanners_are_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.server.device_rate_limit_burst = 20;
        c.server.device_rate_limit_per_minute = 60;
    })
    .await;
    let operator = app.operator().await;
    let b = app.tenant(&operator, "Bolt").await;
    // The request rate: a burst, then 429 with Retry-After; other scanners unaffected.
    let mut statuses = vec![];
    for _ in 0..30 {
        statuses.push(app.get("/api/v1/agent/me", &b.device_credential).await);
    }
    let limited = statuses.into_iter().find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).expect("a 429");
    assert!(limited.headers().contains_key("retry-after"));
    expect_problem(limited, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
    let other = app.tenant(&operator, "Cobalt").await;
    expect_json(app.get("/api/v1/agent/me", &other.device_credential).await, StatusCode::OK).await;
}
