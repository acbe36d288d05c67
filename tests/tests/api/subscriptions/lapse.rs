//! What a lapse does beyond the API's refusals: weekly scans skip the workgroup, uploads
//! are stored and read once renewed, open remote sessions end (also across replicas), and
//! agents back off their cloud features and say why.

use std::time::Duration;

use chrono::Utc;
use myscanner_tests::{Tenant, TestApp, eventually, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{at, subscription_ending};

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
        let path = t.path(&format!("/security/devices/{}/external", t.device_id));
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
    expect_json(app.post(&lapsed.path("/subscription/renew"), &operator, renewal).await, StatusCode::OK).await;
    assert_eq!(weekly("2026-12-05T00:00:00Z").await, 2);
    assert_eq!(jobs(&lapsed).await, 2);
    // Cancelled after a Saturday the service missed: its catch-up leaves it out.
    app.clock.set(at("2026-12-14T00:00:00Z"));
    let cancel = app.post(&active.path("/subscription/cancel"), &operator, json!(null)).await;
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
    let refused = app.get(&t.path("/measurements"), &t.api_token).await;
    expect_problem(refused, StatusCode::PAYMENT_REQUIRED, "subscription-inactive").await;

    let renewal = json!({"period_end": app.clock.now() + chrono::Duration::days(365)});
    expect_json(app.post(&t.path("/subscription/renew"), &operator, renewal).await, StatusCode::OK).await;
    let page = expect_json(app.get(&t.path("/measurements?limit=500"), &t.api_token).await, StatusCode::OK).await;
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
            let path = t.path("/remote/online");
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
    expect_json(app.post(&t.path("/subscription/cancel"), &operator, json!(null)).await, StatusCode::OK).await;
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
    expect_json(app.post(&t.path("/subscription/renew"), &operator, renewal).await, StatusCode::OK).await;
    online().await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"y").await, b"y");
    app.clock.set(end + chrono::Duration::days(14));
    assert_eq!(close_reason(&mut session).await, "subscription_inactive");

    let audit = t.path("/remote-sessions");
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
    let audit = t.path("/remote-sessions");
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
    expect_json(app.post(&t.path("/subscription/cancel"), &operator, json!(null)).await, StatusCode::OK).await;
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
