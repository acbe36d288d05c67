//! Workgroup Security Services: the weekly schedule (fake clock), run now, bulk actions,
//! and the queue's retries, leases and fencing. Real external scans of loopback listeners
//! are in `security/external.rs`, scans scanners run themselves in `security/internal.rs`;
//! the helpers here serve all three.

mod external;
mod internal;

use std::time::Duration;

use chrono::{DateTime, Utc};
use myscanner::security::queue::{self, RunNow, ScanKind, ScanResult};
use myscanner::security::schedule;
use myscanner_tests::{Tenant, TestApp, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::json;
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

/// Switches `kind` scans of `device` on or off, as the tenant's admin.
async fn set(app: &TestApp, t: &Tenant, device: Uuid, kind: &str, enabled: bool) {
    let path = t.path(&format!("/security/devices/{device}/{kind}"));
    let response = app.put(&path, &t.admin_token, json!({"enabled": enabled})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// What an external scan of loopback that found nothing reports.
fn nothing_open() -> ScanResult {
    ScanResult::External {
        target: "127.0.0.1".parse().unwrap(),
        ports: vec![],
        ids_suspected: false,
        ids_reasons: vec![],
    }
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

/// A quiet service and a tenant with a second scanner `b` whose weekly external scan waits
/// in the queue; the tenant's own scanner has no scan enabled.
async fn weekly_scan_waiting() -> (TestApp, Tenant, Uuid) {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (b, _) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    set(&app, &t, b, "external", true).await;
    schedule::enqueue_due(&app.db, at("2026-11-21T00:00:00Z")).await.unwrap();
    (app, t, b)
}

#[tokio::test]
async fn run_now_joins_the_back_of_the_queue_and_is_refused_while_pending() {
    let (app, t, b) = weekly_scan_waiting().await;

    // A scan runs only once its owner has enabled it, now as weekly.
    let run = t.path(&format!("/security/devices/{}/external/run", t.device_id));
    expect_problem(app.post(&run, &t.admin_token, json!({})).await, StatusCode::CONFLICT, "scan-disabled").await;
    set(&app, &t, t.device_id, "external", true).await;
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    expect_problem(app.post(&run, &t.admin_token, json!({})).await, StatusCode::CONFLICT, "scan-already-scheduled")
        .await;
    let order = jobs(&app).await;
    assert_eq!((order[0].0, order[1].0), (b, t.device_id), "behind the weekly scan still waiting");

    // The tab shows both as scheduled, with their places in the queue.
    let list = expect_json(app.get(&t.path("/security/devices"), &t.admin_token).await, StatusCode::OK).await;
    let of =
        |id: Uuid| list["items"].as_array().unwrap().iter().find(|d| d["device_id"] == id.to_string()).unwrap().clone();
    assert_eq!(of(b)["external"]["state"], "scheduled");
    assert_eq!(of(b)["external"]["queue_position"], 1);
    assert_eq!(of(t.device_id)["external"]["queue_position"], 2);
    assert_eq!(of(t.device_id)["internal"]["state"], "not_enabled");
}

/// Run now for many devices at once: the pending and the disabled scans are reported, the
/// others enqueued.
#[tokio::test]
async fn bulk_run_now_enqueues_only_what_is_enabled_and_not_pending() {
    let (app, t, b) = weekly_scan_waiting().await;
    run_enabled(&app, &t, t.device_id, ScanKind::External).await;
    set(&app, &t, b, "internal", true).await;
    let bulk = expect_json(
        app.post(
            &t.path("/security/run"),
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
    let result = nothing_open();
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
    let list = expect_json(app.get(&t.path("/security/devices"), &t.admin_token).await, StatusCode::OK).await;
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
    let settings = t.path("/security/settings");
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
        app.get(&t.path(&format!("/security/devices?device_id={b}")), &t.admin_token).await,
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
    expect_problem(app.get(&t.path("/security/devices"), &viewer).await, StatusCode::FORBIDDEN, "forbidden").await;
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
    let result = nothing_open();
    assert!(!queue::heartbeat(&app.db, &first, 0.5, Duration::from_secs(60)).await.unwrap());
    assert!(!queue::succeed(&app.db, &first, &result).await.unwrap());
    assert!(!queue::fail(&app.db, &first, "late", Duration::ZERO).await.unwrap());
    assert!(queue::succeed(&app.db, &second, &result).await.unwrap());
    let outcomes: Vec<(i32, String)> = sqlx::query_as("SELECT attempt, outcome FROM security_scans ORDER BY attempt")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(outcomes, [(1, "lost".to_owned()), (2, "succeeded".to_owned())]);
}

#[tokio::test]
async fn a_job_handed_back_at_shutdown_keeps_its_attempt() {
    let app = quiet_app().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    run_enabled(&app, &t, t.device_id, ScanKind::External).await;
    let job =
        queue::claim(&app.db, ScanKind::External, None, "worker-c", Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(queue::hand_back(&app.db, &job).await.unwrap());
    let again =
        queue::claim(&app.db, ScanKind::External, None, "worker-c", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(again.attempt, 1);
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
