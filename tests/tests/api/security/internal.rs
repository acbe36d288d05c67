//! Internal scans, which scanners run on their own networks: a device claims its job,
//! reports progress and hosts, and is held to its attempt; the reference agent does it all.

use std::time::Duration;

use myscanner::security::queue::{self, ScanKind};
use myscanner_tests::{eventually, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::json;

use super::{quiet_app, run_enabled, set};

#[tokio::test]
async fn devices_run_their_own_internal_scans() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Other").await;
    let base = t.path("/security");
    let claim = "/api/v1/agent/security-scans/claim?wait=1";

    assert_eq!(
        app.post(claim, &t.device_credential, json!({})).await.status(),
        StatusCode::NO_CONTENT,
        "nothing to scan yet"
    );
    set(&app, &t, t.device_id, "internal", true).await;
    assert_eq!(
        app.post(&format!("{base}/devices/{}/internal/run", t.device_id), &t.admin_token, json!({})).await.status(),
        StatusCode::ACCEPTED
    );
    // Another device cannot take it.
    assert_eq!(app.post(claim, &other.device_credential, json!({})).await.status(), StatusCode::NO_CONTENT);
    let job = expect_json(app.post(claim, &t.device_credential, json!({})).await, StatusCode::OK).await;
    let (job_id, attempt) = (job["job_id"].as_str().unwrap().to_owned(), job["attempt"].clone());
    assert_eq!(attempt, 1);
    let beat = app
        .post(
            &format!("/api/v1/agent/security-scans/{job_id}/heartbeat"),
            &t.device_credential,
            json!({"attempt": 1, "progress": 0.4}),
        )
        .await;
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    let list = expect_json(
        app.get(&format!("{base}/devices?device_id={}", t.device_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"][0]["internal"]["state"], "in_progress");
    assert!((list["items"][0]["internal"]["progress"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    let foreign = app
        .post(
            &format!("/api/v1/agent/security-scans/{job_id}/heartbeat"),
            &other.device_credential,
            json!({"attempt": 1, "progress": 0.5}),
        )
        .await;
    expect_problem(foreign, StatusCode::NOT_FOUND, "not-found").await;
    let bad = app
        .post(
            &format!("/api/v1/agent/security-scans/{job_id}/report"),
            &t.device_credential,
            json!({"attempt": 1, "hosts": [{"ip": "192.0.2.9", "mac": "zz"}]}),
        )
        .await;
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;

    let hosts = json!([
        {"ip": "192.0.2.10", "mac": "00:1b:21:3a:4f:5e", "description": "Intel Corporate (nvr-01)"},
        {"ip": "192.0.2.11", "mac": "3c:52:82:00:00:01", "description": null}
    ]);
    let report = app
        .post(
            &format!("/api/v1/agent/security-scans/{job_id}/report"),
            &t.device_credential,
            json!({"attempt": 1, "hosts": hosts}),
        )
        .await;
    assert_eq!(report.status(), StatusCode::NO_CONTENT);
    let list = expect_json(
        app.get(&format!("{base}/devices?device_id={}", t.device_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (list["items"][0]["internal"]["state"].clone(), list["items"][0]["internal"]["latest"]["hosts_found"].clone()),
        (json!("completed"), json!(2))
    );
    let latest = expect_json(
        app.get(&format!("{base}/devices/{}/internal/latest", t.device_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(latest["findings"][0]["ip"], "192.0.2.10");
    assert_eq!(latest["findings"][0]["mac"], "00:1b:21:3a:4f:5e");
    let by_mac = t.path("/security-scans/findings?mac=3c:52:82:00:00:01");
    assert_eq!(
        expect_json(app.get(&by_mac, &t.admin_token).await, StatusCode::OK).await["items"].as_array().unwrap().len(),
        1
    );
    let by_ip = t.path("/security-scans/findings?ip=192.0.2.10&kind=internal");
    assert_eq!(
        expect_json(app.get(&by_ip, &t.admin_token).await, StatusCode::OK).await["items"].as_array().unwrap().len(),
        1
    );
    // A late report for the same attempt is refused: it is finished.
    let again = app
        .post(
            &format!("/api/v1/agent/security-scans/{job_id}/report"),
            &t.device_credential,
            json!({"attempt": 1, "hosts": []}),
        )
        .await;
    expect_problem(again, StatusCode::CONFLICT, "scan-superseded").await;
}

#[tokio::test]
async fn a_device_that_does_not_claim_in_time_fails_the_attempt() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    run_enabled(&app, &t, t.device_id, ScanKind::Internal).await;
    assert_eq!(queue::fail_unclaimed(&app.db, Duration::from_secs(3600), Duration::ZERO).await.unwrap(), 0, "not yet");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(queue::fail_unclaimed(&app.db, Duration::ZERO, Duration::ZERO).await.unwrap(), 1);
    let (state, attempt, error): (String, i32, String) =
        sqlx::query_as("SELECT state, attempt, last_error FROM security_scan_jobs").fetch_one(&app.db).await.unwrap();
    assert_eq!((state.as_str(), attempt), ("queued", 1), "retried");
    assert!(error.contains("did not claim"));
    // The device comes online: its claim is the second attempt.
    let job = expect_json(
        app.post("/api/v1/agent/security-scans/claim?wait=0", &t.device_credential, json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(job["attempt"], 2);
}

#[tokio::test]
async fn the_agent_claims_runs_and_reports_internal_scans() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    // The agent may sweep no network here (this machine's own networks are off limits),
    // so its scan fails — after a real claim and a real report, which is what this shows.
    let agent = myscanner_agent::Agent::start(app.agent_config(&t.device_credential, dir.path())).await.unwrap();
    set(&app, &t, t.device_id, "internal", true).await;
    let run = t.path(&format!("/security/devices/{}/internal/run", t.device_id));
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(20), "the agent's report", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM security_scans").fetch_one(&app.db).await.unwrap() == 1
    })
    .await;
    let (outcome, error): (String, String) =
        sqlx::query_as("SELECT outcome, error FROM security_scans").fetch_one(&app.db).await.unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("allow-list"), "{error}");
    agent.stop().await;
}
