//! Several replicas behind a real load balancer (HAProxy on loopback, round robin): remote
//! control whose tunnel and sessions land on different replicas, a replica holding tunnels
//! dying, and the weekly Security Services enqueue run by every replica across Saturdays
//! and restarts, on a clock the test drives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use myscanner::security::schedule;
use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_tests::balancer::Balancer;
use myscanner_tests::remote::{self, echo, echo_server, session_url};
use myscanner_tests::{Replica, Tenant, TestApp, eventually};
use serde_json::json;
use uuid::Uuid;

/// Three replicas (no consumer, scheduler or workers) behind a balancer, on the database
/// of a quiet service that only sets the scene up.
async fn three_behind_a_balancer() -> (TestApp, Vec<Replica>, Balancer) {
    let app = TestApp::spawn_with(|c| {
        c.security.scheduler = false;
        c.security.workers = 0;
        // Client addresses arrive in X-Forwarded-For from the balancer.
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(app.spawn_replica().await);
    }
    let urls: Vec<&str> = replicas.iter().map(|r| r.base_url.as_str()).collect();
    let balancer = Balancer::start(&urls).await;
    (app, replicas, balancer)
}

/// The tenant's scanner, with remote control on, reaching MyScanner at `api_url`.
async fn scanner(app: &TestApp, t: &Tenant, api_url: &str, dir: &tempfile::TempDir) -> Agent {
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.api_url = api_url.to_owned();
    config.settings = Settings {
        measurement_transfer: false,
        allow_remote_control: true,
        reference_scan_sync: false,
        load_list_sync: false,
    };
    config.remote_control_target = echo_server().await;
    Agent::start(config).await.expect("agent starts")
}

/// The replica (its base URL) holding the scanner's tunnel, once one other than `not` does.
async fn tunnel_holder(app: &TestApp, t: &Tenant, replicas: &[Replica], not: Option<&str>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holder: Option<String> = sqlx::query_scalar("SELECT replica_url FROM device_tunnels WHERE device_id = $1")
            .bind(t.device_id)
            .fetch_optional(&app.db)
            .await
            .unwrap();
        if let Some(holder) = holder.filter(|h| replicas.iter().any(|r| &r.base_url == h) && Some(h.as_str()) != not) {
            return holder;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scanner's tunnel never reached a replica other than {not:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The replica serving session `id` (the user's side).
async fn serving_replica(app: &TestApp, id: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT replica_id FROM remote_sessions WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn tunnel_replica(app: &TestApp, t: &Tenant) -> Uuid {
    sqlx::query_scalar("SELECT replica_id FROM device_tunnels WHERE device_id = $1")
        .bind(t.device_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Opens sessions through the balancer until one is served by a replica other than the one
/// holding the tunnel (round robin brings one within a few), and echoes through each.
async fn a_session_served_apart_from_the_tunnel(app: &TestApp, t: &Tenant, balancer: &Balancer) {
    let url = session_url(&balancer.url, t.workgroup_id, t.device_id);
    let tunnel = tunnel_replica(app, t).await;
    for attempt in 0..12 {
        let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("a session opens");
        let payload = format!("through the balancer, attempt {attempt}").into_bytes();
        assert_eq!(echo(&mut session, &payload).await, payload);
        let id: Uuid = newest_session(app, t).await;
        if serving_replica(app, id).await != tunnel {
            return;
        }
    }
    panic!("twelve sessions through a round-robin balancer all landed on the tunnel's replica");
}

async fn newest_session(app: &TestApp, t: &Tenant) -> Uuid {
    sqlx::query_scalar("SELECT id FROM remote_sessions WHERE device_id = $1 ORDER BY started_at DESC, id DESC LIMIT 1")
        .bind(t.device_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn tunnels_and_sessions_on_different_replicas_meet_through_the_balancer() {
    let (app, replicas, balancer) = three_behind_a_balancer().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = scanner(&app, &t, &balancer.url, &dir).await;
    tunnel_holder(&app, &t, &replicas, None).await;
    a_session_served_apart_from_the_tunnel(&app, &t, &balancer).await;
    agent.stop().await;
}

#[tokio::test]
async fn when_the_replica_holding_a_tunnel_dies_the_scanner_reconnects_through_the_balancer() {
    let (app, mut replicas, balancer) = three_behind_a_balancer().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = scanner(&app, &t, &balancer.url, &dir).await;
    let holder = tunnel_holder(&app, &t, &replicas, None).await;

    // The replica holding the tunnel dies as a crashed process does.
    replicas.iter_mut().find(|r| r.base_url == holder).expect("the holder is one of the three").kill();

    // The balancer takes it out; the scanner comes back through it to a survivor, and
    // sessions work again — served apart from the tunnel, relayed between survivors.
    let survivor = tunnel_holder(&app, &t, &replicas, Some(&holder)).await;
    assert_ne!(survivor, holder);
    a_session_served_apart_from_the_tunnel(&app, &t, &balancer).await;
    agent.stop().await;
}

/// Saturday `week` weeks after 2026-12-05 (a Saturday), `hours` past midnight UTC.
fn saturday(week: i64, hours: i64) -> DateTime<Utc> {
    "2026-12-05T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        + chrono::Duration::weeks(week)
        + chrono::Duration::hours(hours)
}

#[tokio::test]
async fn every_replica_enqueues_the_weekly_scans_and_each_runs_once_a_week() {
    let app = TestApp::spawn_with(|c| {
        c.security.scheduler = false;
        c.security.workers = 0;
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (second, _) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    for (device, kind) in [(t.device_id, "external"), (t.device_id, "internal"), (second, "external")] {
        let path = t.path(&format!("/security/devices/{device}/{kind}"));
        assert_eq!(app.put(&path, &t.admin_token, json!({"enabled": true})).await.status(), 204);
    }

    const WEEKS: i64 = 6;
    for week in 0..WEEKS {
        // Three replicas start during the Saturday (each catches the slot up), one is killed,
        // two restart; the Saturday wake-up itself races them from the test.
        app.clock.set(saturday(week, week % 5));
        let mut three = Vec::new();
        for _ in 0..3 {
            three.push(app.spawn_replica_with(|c| c.security.scheduler = true).await);
        }
        let wake_up = schedule::enqueue_due(&app.db, saturday(week, 0));
        three[0].kill();
        let (restarted, woken) = tokio::join!(app.spawn_replica_with(|c| c.security.scheduler = true), wake_up);
        woken.unwrap();
        three.push(restarted);
        eventually(Duration::from_secs(10), "this week's weekly scans", || async {
            jobs_of(&app, saturday(week, 0)).await == 3
        })
        .await;
        for mut replica in three {
            replica.stop().await;
        }
        // Those scans ran; next Saturday brings the next ones.
        sqlx::query("UPDATE security_scan_jobs SET state = 'succeeded', finished_at = now() WHERE state = 'queued'")
            .execute(&app.db)
            .await
            .unwrap();
    }
    let per_key: Vec<(Uuid, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT device_id, kind, scheduled_for, count(*) FROM security_scan_jobs
         GROUP BY device_id, kind, scheduled_for ORDER BY scheduled_for, device_id, kind",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(per_key.len() as i64, 3 * WEEKS, "one job per device, kind and week: {per_key:?}");
    assert!(per_key.iter().all(|(_, _, _, n)| *n == 1), "{per_key:?}");
}

async fn jobs_of(app: &TestApp, slot: DateTime<Utc>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM security_scan_jobs WHERE scheduled_for = $1 AND origin = 'weekly'")
        .bind(slot)
        .fetch_one(&app.db)
        .await
        .unwrap()
}
