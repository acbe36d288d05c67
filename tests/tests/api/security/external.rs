//! Real external scans: the service's own scan worker probes listeners the test opens on
//! loopback, and the tab, the latest scan and the history say what it found.

use std::time::Duration;

use myscanner_tests::{Tenant, TestApp, eventually, expect_json};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::set;

/// A service with one scan worker allowed to scan loopback, over `ports`.
async fn scanning_app(ports: &str, allowed: &str) -> TestApp {
    let (ports, allowed) = (ports.to_owned(), allowed.to_owned());
    TestApp::spawn_with(move |c| {
        c.security.scheduler = false;
        c.security.workers = 1;
        c.security.poll_interval_ms = 50;
        c.security.retry_backoff_secs = 0;
        c.security.lease_secs = 30;
        c.security.external_ports = ports;
        c.security.allowed_targets = vec![allowed.parse().unwrap()];
    })
    .await
}

/// Sets up a tenant whose device was seen from 127.0.0.1, runs its external scan now and
/// waits for the scan to reach `state`; returns the tenant and the tab's status.
async fn scan_until(app: &TestApp, state: &str) -> (Tenant, Value) {
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    assert_eq!(app.get("/api/v1/agent/me", &t.device_credential).await.status(), StatusCode::OK);
    set(app, &t, t.device_id, "external", true).await;
    let run = t.path(&format!("/security/devices/{}/external/run", t.device_id));
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(20), &format!("the scan to be {state}"), || async {
        status(app, &t, "external").await["state"] == state
    })
    .await;
    let status = status(app, &t, "external").await;
    (t, status)
}

async fn status(app: &TestApp, t: &Tenant, kind: &str) -> Value {
    let list = expect_json(
        app.get(&t.path(&format!("/security/devices?device_id={}", t.device_id)), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    list["items"][0][kind].clone()
}

#[tokio::test]
async fn a_scan_records_the_ports_that_came_and_went_since_the_previous_one() {
    let (kept, closed) =
        (TcpListener::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    let (kept_port, closed_port) = (kept.local_addr().unwrap().port(), closed.local_addr().unwrap().port());
    let app = scanning_app(&format!("{kept_port},{closed_port}"), "127.0.0.1/32").await;
    let (t, first) = scan_until(&app, "completed").await;
    assert_eq!(first["latest"]["open_ports"], 2, "{first}");
    assert!(first["latest"]["changes"].is_null(), "a first scan has nothing to compare with: {first}");
    let first_id = first["latest"]["scan_id"].clone();

    drop(closed);
    let run = t.path(&format!("/security/devices/{}/external/run", t.device_id));
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(20), "the second scan", || async {
        let s = status(&app, &t, "external").await;
        s["state"] == "completed" && s["latest"]["scan_id"] != first_id
    })
    .await;
    let second = status(&app, &t, "external").await;
    let changes = &second["latest"]["changes"];
    assert_eq!(changes["previous_scan_id"], first_id);
    assert_eq!(changes["gone_ports"], json!([closed_port]));
    assert_eq!(changes["new_ports"], json!([]));
    // The history keeps it too.
    let history =
        expect_json(app.get(&t.path("/security-scans?kind=external"), &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(history["items"][0]["changes"]["gone_ports"], json!([closed_port]));
    assert!(history["items"][1]["changes"].is_null());
    // A port selects the scans that found it open: only the first.
    let found = expect_json(
        app.get(&t.path(&format!("/security-scans?port={closed_port}")), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["items"][0]["id"], first_id);
    drop(kept);
}

#[tokio::test]
async fn a_scan_failing_every_time_makes_four_attempts_then_reports_scan_failed() {
    // The device is seen from 127.0.0.1, but only 127.0.0.2 may be scanned.
    let app = scanning_app("1-100", "127.0.0.2/32").await;
    let (_, failed) = scan_until(&app, "failed").await;
    assert!(failed["last_error"].as_str().unwrap().contains("allow-list"), "{failed}");
    let attempts: Vec<(i32, String)> = sqlx::query_as("SELECT attempt, outcome FROM security_scans ORDER BY attempt")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        attempts,
        (1..=4).map(|a| (a, "failed".to_owned())).collect::<Vec<_>>(),
        "the first try and three retries"
    );
}

#[tokio::test]
async fn an_external_scan_finds_the_listeners_and_nothing_else() {
    let listeners: Vec<tokio::net::TcpListener> = {
        let mut v = vec![];
        for _ in 0..3 {
            v.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        v
    };
    let open: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let ports = format!("{},{},{},20000-20200", open[0], open[1], open[2]);
    let app = scanning_app(&ports, "127.0.0.0/8").await;
    let (t, done) = scan_until(&app, "completed").await;
    assert_eq!(done["latest"]["open_ports"], 3);
    assert_eq!(done["latest"]["ids_suspected"], false);
    let latest = expect_json(
        app.get(&t.path(&format!("/security/devices/{}/external/latest", t.device_id)), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    let mut found: Vec<u16> =
        latest["findings"].as_array().unwrap().iter().map(|f| f["port"].as_u64().unwrap() as u16).collect();
    found.sort_unstable();
    let mut expected = open.clone();
    expected.sort_unstable();
    assert_eq!(found, expected);
    assert_eq!(latest["scan"]["target"], "127.0.0.1");
    // The history is searchable by port.
    let by_port = expect_json(
        app.get(&t.path(&format!("/security-scans/findings?port={}", open[1])), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_port["items"].as_array().unwrap().len(), 1);
    let history =
        expect_json(app.get(&t.path("/security-scans?kind=external"), &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(history["items"][0]["outcome"], "succeeded");
    drop(listeners);
}

#[tokio::test]
async fn a_target_answering_on_every_port_is_flagged_as_an_ids() {
    let mut listeners = vec![];
    for _ in 0..120 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let ports: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().port().to_string()).collect();
    let app = scanning_app(&format!("{},21000-21030", ports.join(",")), "127.0.0.0/8").await;
    let (_, done) = scan_until(&app, "completed").await;
    assert_eq!(done["latest"]["ids_suspected"], true, "{done}");
    assert_eq!(done["latest"]["open_ports"], 120, "the ports it verified are still reported");
    drop(listeners);
}
