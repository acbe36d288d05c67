//! Workgroup Security Services: the weekly schedule (fake clock), run now, bulk actions,
//! the queue's retries, leases and fencing, and real external scans of loopback listeners.

use std::time::Duration;

use chrono::{DateTime, Utc};
use myscanner::security::queue::{self, RunNow, ScanKind, ScanResult};
use myscanner::security::schedule;
use myscanner_tests::{Tenant, TestApp, eventually, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A service whose scheduler and workers stay still, so the test drives the queue.
async fn quiet_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.security.scheduler = false;
        c.security.workers = 0;
    })
    .await
}

/// Runs `kind` on `device` now, through the queue, with the scan enabled first.
async fn run_enabled(app: &TestApp, t: &Tenant, device: Uuid, kind: ScanKind) {
    let name = match kind {
        ScanKind::Internal => "internal",
        ScanKind::External => "external",
    };
    set(app, t, device, name, true).await;
    assert_eq!(queue::run_now(&app.db, t.workgroup_id, device, kind).await.unwrap(), RunNow::Queued);
}

async fn jobs(app: &TestApp) -> Vec<(Uuid, String, Option<DateTime<Utc>>, String)> {
    sqlx::query_as("SELECT device_id, kind, scheduled_for, origin FROM security_scan_jobs ORDER BY queue_position")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn set(app: &TestApp, t: &Tenant, device: Uuid, kind: &str, enabled: bool) {
    let path = format!("/api/v1/workgroups/{}/security/devices/{device}/{kind}", t.workgroup_id);
    let response = app
        .request(reqwest::Method::PUT, &path, Some(&t.admin_token))
        .json(&json!({"enabled": enabled}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn weekly_scans_are_enqueued_once_per_saturday() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (b, _) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    let (c, _) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    set(&app, &t, t.device_id, "external", true).await;
    set(&app, &t, b, "internal", true).await;
    set(&app, &t, c, "external", false).await; // disabled: never scheduled

    // The service was down across Saturday midnight and starts on Sunday: caught up once.
    assert_eq!(schedule::enqueue_due(&app.db, at("2026-11-22T09:30:00Z")).await.unwrap(), 2);
    let queued = jobs(&app).await;
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|j| j.2 == Some(at("2026-11-21T00:00:00Z")) && j.3 == "weekly"));
    // The Saturday wake-up itself, a restart, and two replicas at once: still one job each.
    let (x, y) = tokio::join!(
        schedule::enqueue_due(&app.db, at("2026-11-21T00:00:00Z")),
        schedule::enqueue_due(&app.db, at("2026-11-21T00:00:01Z"))
    );
    assert_eq!(x.unwrap() + y.unwrap(), 0);
    assert_eq!(jobs(&app).await.len(), 2);

    // Those scans ran; the next Saturday brings the next ones.
    sqlx::query("UPDATE security_scan_jobs SET state = 'succeeded', finished_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        schedule::enqueue_due(&app.db, at("2026-11-28T00:00:00Z")),
        schedule::enqueue_due(&app.db, at("2026-11-28T00:00:00Z"))
    );
    assert_eq!(x.unwrap() + y.unwrap(), 2);
    let next: Vec<_> = jobs(&app).await.into_iter().filter(|j| j.2 == Some(at("2026-11-28T00:00:00Z"))).collect();
    assert_eq!(next.len(), 2);
    assert!(!next.iter().any(|j| j.0 == c), "a disabled scan is not scheduled");
}

#[tokio::test]
async fn run_now_joins_the_back_of_the_queue_and_is_refused_while_pending() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (b, _) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    set(&app, &t, b, "external", true).await;
    schedule::enqueue_due(&app.db, at("2026-11-21T00:00:00Z")).await.unwrap();

    // A scan runs only once its owner has enabled it, now as weekly.
    let run = format!("/api/v1/workgroups/{}/security/devices/{}/external/run", t.workgroup_id, t.device_id);
    expect_problem(app.post(&run, &t.admin_token, json!({})).await, StatusCode::CONFLICT, "scan-disabled").await;
    set(&app, &t, t.device_id, "external", true).await;
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    expect_problem(app.post(&run, &t.admin_token, json!({})).await, StatusCode::CONFLICT, "scan-already-scheduled")
        .await;
    let order = jobs(&app).await;
    assert_eq!((order[0].0, order[1].0), (b, t.device_id), "behind the weekly scan still waiting");

    // The tab shows both as scheduled, with their places in the queue.
    let list = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security/devices", t.workgroup_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    let of =
        |id: Uuid| list["items"].as_array().unwrap().iter().find(|d| d["device_id"] == id.to_string()).unwrap().clone();
    assert_eq!(of(b)["external"]["state"], "scheduled");
    assert_eq!(of(b)["external"]["queue_position"], 1);
    assert_eq!(of(t.device_id)["external"]["queue_position"], 2);
    assert_eq!(of(t.device_id)["internal"]["state"], "not_enabled");

    // Bulk: the pending and the disabled ones are reported, the others enqueued.
    set(&app, &t, b, "internal", true).await;
    let bulk = expect_json(
        app.post(
            &format!("/api/v1/workgroups/{}/security/run", t.workgroup_id),
            &t.admin_token,
            json!({"all_devices": true, "kinds": ["external", "internal"]}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(bulk["applied"], 1, "{bulk}");
    assert_eq!(bulk["already_scheduled"].as_array().unwrap().len(), 2);
    assert_eq!(bulk["disabled"], json!([{"device_id": t.device_id, "kind": "internal"}]));
}

#[tokio::test]
async fn disabling_a_scan_withdraws_what_waits_and_stops_what_runs() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (b, _) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    let lease = Duration::from_secs(60);
    // One waiting (a retry after a failed attempt), one running.
    run_enabled(&app, &t, t.device_id, ScanKind::External).await;
    let first = queue::claim(&app.db, ScanKind::External, None, "w", lease).await.unwrap().unwrap();
    assert!(queue::fail(&app.db, &first, "unreachable", Duration::ZERO).await.unwrap());
    run_enabled(&app, &t, b, ScanKind::External).await;
    let running = queue::claim(&app.db, ScanKind::External, Some(b), "w", lease).await.unwrap().unwrap();

    // The owner says no, to both.
    set(&app, &t, t.device_id, "external", false).await;
    set(&app, &t, b, "external", false).await;
    assert!(queue::claim(&app.db, ScanKind::External, None, "w", lease).await.unwrap().is_none(), "nothing to run");
    let result = ScanResult::External {
        target: "127.0.0.1".parse().unwrap(),
        ports: vec![],
        ids_suspected: false,
        ids_reasons: vec![],
    };
    assert!(!queue::heartbeat(&app.db, &running, 0.5, lease).await.unwrap(), "the running attempt is fenced off");
    assert!(!queue::succeed(&app.db, &running, &result).await.unwrap());
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM security_scan_jobs ORDER BY queue_position")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(states, ["withdrawn", "withdrawn"]);
    let outcomes: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT device_id, outcome FROM security_scans ORDER BY finished_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(outcomes, [(t.device_id, "failed".into()), (b, "withdrawn".into())], "history kept, nothing deleted");
    // The tab says not enabled, and nothing scheduled.
    let list = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security/devices", t.workgroup_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    for device in list["items"].as_array().unwrap() {
        assert_eq!(device["external"]["enabled"], false, "{device}");
        assert_ne!(device["external"]["state"], "scheduled", "{device}");
    }
    // Enabled again, it runs again.
    run_enabled(&app, &t, b, ScanKind::External).await;
    assert!(queue::claim(&app.db, ScanKind::External, Some(b), "w", lease).await.unwrap().is_some());
}

#[tokio::test]
async fn bulk_settings_by_selection_and_filter() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Other").await;
    let (b, _) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    let settings = format!("/api/v1/workgroups/{}/security/settings", t.workgroup_id);
    let selected = expect_json(
        app.post(
            &settings,
            &t.admin_token,
            json!({"device_ids": [b, other.device_id], "kinds": ["internal", "external"], "enabled": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(selected["applied"], 2, "another workgroup's device is not selected");
    let all = expect_json(
        app.post(&settings, &t.admin_token, json!({"site_id": t.site_id, "kinds": ["external"], "enabled": false}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["applied"], 2);
    // A misspelt field is refused, not ignored (the schema says no other fields).
    let typo = json!({"site_id": t.site_id, "kinds": ["external"], "enabled": false, "device_id": b});
    expect_problem(
        app.post(&settings, &t.admin_token, typo).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    let list = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security/devices?device_id={b}", t.workgroup_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (list["items"][0]["internal"]["enabled"].clone(), list["items"][0]["external"]["enabled"].clone()),
        (json!(true), json!(false))
    );
    // A selection of nothing selects nothing: it is not "everything".
    let nothing = expect_json(
        app.post(&settings, &t.admin_token, json!({"kinds": ["external"], "enabled": true})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(nothing["applied"], 0);
    let (_, viewer) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    expect_problem(
        app.get(&format!("/api/v1/workgroups/{}/security/devices", t.workgroup_id), &viewer).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_dead_workers_job_is_rescued_and_its_late_result_fenced_off() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    run_enabled(&app, &t, t.device_id, ScanKind::External).await;
    let first =
        queue::claim(&app.db, ScanKind::External, None, "worker-a", Duration::from_millis(300)).await.unwrap().unwrap();
    assert!(
        queue::claim(&app.db, ScanKind::External, None, "worker-b", Duration::from_secs(60)).await.unwrap().is_none(),
        "claimed once"
    );
    // worker-a dies: no heartbeat. Its lease runs out and the job is rescued.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(queue::rescue_expired(&app.db, Duration::ZERO).await.unwrap(), 1);
    let second =
        queue::claim(&app.db, ScanKind::External, None, "worker-b", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!((second.id, second.attempt), (first.id, 2));
    // worker-a comes back from the dead: everything it tries to write is refused.
    let result = ScanResult::External {
        target: "127.0.0.1".parse().unwrap(),
        ports: vec![],
        ids_suspected: false,
        ids_reasons: vec![],
    };
    assert!(!queue::heartbeat(&app.db, &first, 0.5, Duration::from_secs(60)).await.unwrap());
    assert!(!queue::succeed(&app.db, &first, &result).await.unwrap());
    assert!(!queue::fail(&app.db, &first, "late", Duration::ZERO).await.unwrap());
    assert!(queue::succeed(&app.db, &second, &result).await.unwrap());
    let outcomes: Vec<(i32, String)> = sqlx::query_as("SELECT attempt, outcome FROM security_scans ORDER BY attempt")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(outcomes, [(1, "lost".to_owned()), (2, "succeeded".to_owned())]);
    // Handing back (shutdown) does not use up an attempt.
    assert_eq!(queue::run_now(&app.db, t.workgroup_id, t.device_id, ScanKind::External).await.unwrap(), RunNow::Queued);
    let job =
        queue::claim(&app.db, ScanKind::External, None, "worker-c", Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(queue::hand_back(&app.db, &job).await.unwrap());
    let again =
        queue::claim(&app.db, ScanKind::External, None, "worker-c", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(again.attempt, 1);
}

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
    let run = format!("/api/v1/workgroups/{}/security/devices/{}/external/run", t.workgroup_id, t.device_id);
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
        app.get(
            &format!("/api/v1/workgroups/{}/security/devices?device_id={}", t.workgroup_id, t.device_id),
            &t.admin_token,
        )
        .await,
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
    let run = format!("/api/v1/workgroups/{}/security/devices/{}/external/run", t.workgroup_id, t.device_id);
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
    let history = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security-scans?kind=external", t.workgroup_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(history["items"][0]["changes"]["gone_ports"], json!([closed_port]));
    assert!(history["items"][1]["changes"].is_null());
    // A port selects the scans that found it open: only the first.
    let found = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security-scans?port={closed_port}", t.workgroup_id), &t.admin_token)
            .await,
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
        app.get(
            &format!("/api/v1/workgroups/{}/security/devices/{}/external/latest", t.workgroup_id, t.device_id),
            &t.admin_token,
        )
        .await,
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
        app.get(
            &format!("/api/v1/workgroups/{}/security-scans/findings?port={}", t.workgroup_id, open[1]),
            &t.admin_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_port["items"].as_array().unwrap().len(), 1);
    let history = expect_json(
        app.get(&format!("/api/v1/workgroups/{}/security-scans?kind=external", t.workgroup_id), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
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

#[tokio::test]
async fn devices_run_their_own_internal_scans() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Other").await;
    let base = format!("/api/v1/workgroups/{}/security", t.workgroup_id);
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
    let by_mac = format!("/api/v1/workgroups/{}/security-scans/findings?mac=3c:52:82:00:00:01", t.workgroup_id);
    assert_eq!(
        expect_json(app.get(&by_mac, &t.admin_token).await, StatusCode::OK).await["items"].as_array().unwrap().len(),
        1
    );
    let by_ip = format!("/api/v1/workgroups/{}/security-scans/findings?ip=192.0.2.10&kind=internal", t.workgroup_id);
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
    let run = format!("/api/v1/workgroups/{}/security/devices/{}/internal/run", t.workgroup_id, t.device_id);
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

#[tokio::test]
async fn one_claim_fills_every_free_slot_in_queue_order() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut queued = vec![t.device_id];
    for _ in 0..2 {
        queued.push(app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await.0);
    }
    for device in &queued {
        run_enabled(&app, &t, *device, ScanKind::External).await;
    }
    let lease = Duration::from_secs(60);
    let claimed = queue::claim_many(&app.db, ScanKind::External, None, "pool", lease, 5).await.unwrap();
    let devices: Vec<Uuid> = claimed.iter().map(|j| j.device_id).collect();
    assert_eq!(devices, queued, "all three, oldest first");
    assert!(claimed.iter().all(|j| j.attempt == 1));
    assert!(queue::claim_many(&app.db, ScanKind::External, None, "pool", lease, 5).await.unwrap().is_empty());
}
