//! Prometheus metrics (`GET /metrics` on `metrics.listen`): after real activity — API
//! requests, measurements published by a real agent over AMQP, rejected messages, queued
//! security scans, remote-control tunnels and sessions — the exposition shows it, with
//! labels that stay bounded (route templates, never paths), and only on its own listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use myscanner::config::Config;
use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::MeasurementV1;
use myscanner_tests::remote::{self, echo_server, session_url};
use myscanner_tests::{Tenant, TestApp, eventually, expect_json};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A loopback address for the metrics listener, free now and outside the kernel's
/// ephemeral range, where every other test's port-0 listener lands: nothing else takes it
/// before the service binds it.
fn metrics_address() -> SocketAddr {
    loop {
        let address = SocketAddr::from(([127, 0, 0, 1], rand::random_range(20_000..32_000)));
        if std::net::TcpListener::bind(address).is_ok() {
            return address;
        }
    }
}

/// The service with its metrics on a listener whose address the test knows, and the URL of
/// its `/metrics`.
async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> (TestApp, String) {
    let address = metrics_address();
    let app = TestApp::spawn_with(|config| {
        config.metrics.listen = address;
        adjust(config);
    })
    .await;
    (app, format!("http://{address}/metrics"))
}

/// One scrape, parsed.
struct Scrape(String);

impl Scrape {
    async fn of(url: &str) -> Scrape {
        let response = reqwest::get(url).await.expect("the metrics listener answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        Scrape(response.text().await.unwrap())
    }

    /// The value of the series `name` whose labels include `labels`, if there is one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)),
                None => (series, HashMap::new()),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| series_labels.get(*k).map(String::as_str) == Some(*v));
            matches.then(|| value.parse().unwrap())
        })
    }

    /// Like [`Scrape::value`], for a series that must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.0))
    }
}

/// `a="1",b="x"` (values never hold `",` in these tests).
fn parse_labels(labels: &str) -> HashMap<String, String> {
    labels
        .split("\",")
        .filter_map(|pair| pair.split_once("=\""))
        .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
        .collect()
}

/// Scrapes until `holds` is true of a scrape.
async fn eventually_scraped(url: &str, what: &str, holds: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(WAIT, what, || async { holds(&Scrape::of(url).await) }).await;
    Scrape::of(url).await
}

/// Measurements with scan times PostgreSQL stores exactly (microseconds).
fn measurements(t: &Tenant, n: usize) -> Vec<MeasurementV1> {
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let now = Utc::now().duration_trunc(TimeDelta::microseconds(1)).unwrap();
    (0..n).map(|i| factory.next(now - TimeDelta::seconds(i as i64))).collect()
}

#[tokio::test]
async fn api_requests_are_counted_by_route_template_method_and_status() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    for _ in 0..2 {
        expect_json(app.get(&t.path("/measurements"), &t.admin_token).await, StatusCode::OK).await;
    }
    let unknown = app.get(&t.path("/no-such-thing"), &t.admin_token).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let scrape = Scrape::of(&metrics).await;
    let route = "/api/v1/workgroups/{workgroup_id}/measurements";
    let listed = [("method", "GET"), ("route", route), ("status", "200")];
    assert_eq!(scrape.get("myscanner_http_requests_total", &listed), 2.0);
    let timed = [("method", "GET"), ("route", route), ("status_class", "2xx")];
    assert_eq!(scrape.get("myscanner_http_request_duration_seconds_count", &timed), 2.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(scrape.get("myscanner_http_requests_total", &unmatched), 1.0);
    assert!(!scrape.0.contains(&t.workgroup_id.to_string()), "no concrete path becomes a label");
    let created = [("method", "POST"), ("route", "/api/v1/workgroups"), ("status", "201")];
    assert_eq!(scrape.get("myscanner_http_requests_total", &created), 1.0);
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_never_on_the_api_port() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let port = |url: &str| reqwest::Url::parse(url).unwrap().port();
    assert_ne!(port(&metrics), port(&app.base_url), "metrics have a port of their own");
    let scrape = Scrape::of(&metrics).await;
    assert_eq!(scrape.get("myscanner_build_info", &[]), 1.0);

    let on_the_api = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!on_the_api.contains("# TYPE myscanner_"), "the API's port serves no metrics");
    let api_on_metrics = reqwest::get(metrics.replace("/metrics", "/api/v1/openapi.json")).await.unwrap();
    assert_eq!(api_on_metrics.status(), StatusCode::NOT_FOUND, "the metrics listener serves nothing of the API");
}

#[tokio::test]
async fn metrics_switched_off_open_no_listener() {
    let (_app, metrics) = spawn_with(|c| c.metrics.enabled = false).await;
    assert!(reqwest::get(&metrics).await.is_err(), "nothing listens at {metrics}");
}

#[tokio::test]
async fn ingest_lag_is_the_queue_depth_and_drains_into_stored_measurements() {
    // No consumer at first: what the agent publishes waits in the queue.
    let (mut app, metrics) = spawn_with(|c| c.ingest.enabled = false).await;
    let broker = format!("amqp://guest:guest@127.0.0.1:5672/{}", app.vhost());
    let connection = Connection::connect(&broker, ConnectionProperties::default()).await.unwrap();
    myscanner::broker::declare_topology(&connection.create_channel().await.unwrap()).await.unwrap();
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let outbox = tempfile::tempdir().unwrap();
    let agent = Agent::start(app.agent_config(&t.device_credential, outbox.path())).await.expect("agent starts");
    agent.record(&measurements(&t, 3)).unwrap();
    assert!(agent.drained(WAIT).await, "the broker confirmed every measurement");

    let waiting = eventually_scraped(&metrics, "three messages waiting", |s| {
        s.value("myscanner_ingest_queue_messages", &[]) == Some(3.0)
    })
    .await;
    assert_eq!(waiting.get("myscanner_ingest_queue_consumers", &[]), 0.0);
    assert_eq!(waiting.get("myscanner_ingest_measurements_stored_total", &[]), 0.0);
    assert_eq!(waiting.value("myscanner_ingest_consumer_connected", &[]), None, "this replica runs no consumer");

    // A consumer drains the queue into the database.
    app.config.ingest.enabled = true;
    app.restart().await;
    let drained = eventually_scraped(&metrics, "the queue drained into stored measurements", |s| {
        s.value("myscanner_ingest_queue_messages", &[]) == Some(0.0)
            && s.value("myscanner_ingest_measurements_stored_total", &[]) == Some(3.0)
    })
    .await;
    assert_eq!(app.stored(t.device_id).await, 3);
    assert_eq!(drained.get("myscanner_ingest_consumer_connected", &[]), 1.0);
    assert_eq!(drained.get("myscanner_ingest_queue_consumers", &[]), f64::from(app.config.ingest.channels));
    assert!(drained.get("myscanner_ingest_batch_store_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(drained.get("myscanner_ingest_duplicates_total", &[]), 0.0);
    agent.stop().await;
}

#[tokio::test]
async fn measurements_received_twice_count_as_duplicates_not_as_stored() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let outbox = tempfile::tempdir().unwrap();
    let agent = Agent::start(app.agent_config(&t.device_credential, outbox.path())).await.expect("agent starts");
    let sent = measurements(&t, 5);
    agent.record(&sent).unwrap();
    agent.record(&sent).unwrap();
    assert!(agent.drained(WAIT).await);

    let scrape = eventually_scraped(&metrics, "ten measurements handled", |s| {
        let stored = s.value("myscanner_ingest_measurements_stored_total", &[]).unwrap_or(0.0);
        stored + s.value("myscanner_ingest_duplicates_total", &[]).unwrap_or(0.0) >= 10.0
    })
    .await;
    assert_eq!(scrape.get("myscanner_ingest_measurements_stored_total", &[]), 5.0);
    assert_eq!(scrape.get("myscanner_ingest_duplicates_total", &[]), 5.0);
    assert_eq!(app.stored(t.device_id).await, 5);
    agent.stop().await;
}

#[tokio::test]
async fn rejected_messages_are_counted_by_kind_of_reason() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    // A raw publisher with the device's own broker user, to send what an agent never would.
    let user = format!("{}{}", app.config.broker.device_user_prefix, t.device_id);
    let url = format!("amqp://{user}:{}@127.0.0.1:5672/{}", t.device_credential, app.vhost());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.expect("device connects");
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut out_of_range = serde_json::to_value(&measurements(&t, 1)[0]).unwrap();
    out_of_range["volume_m3"] = json!(-3.0);
    let bodies: [Vec<u8>; 3] = [
        serde_json::to_vec(&out_of_range).unwrap(),
        b"{\"schema_version\": 1, \"measurement_id\": ".to_vec(),
        serde_json::to_vec(&measurements(&t, 1)[0]).unwrap(),
    ];
    for body in &bodies {
        let properties = BasicProperties::default().with_user_id(ShortString::from(user.clone()));
        let key = myscanner_protocol::routing_key(t.device_id);
        channel
            .basic_publish("measurements".into(), key.into(), BasicPublishOptions::default(), body, properties)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let scrape = eventually_scraped(&metrics, "two rejections and a stored measurement", |s| {
        s.value("myscanner_ingest_rejections_total", &[("reason", "malformed")]) == Some(1.0)
            && s.value("myscanner_ingest_rejections_total", &[("reason", "out_of_range")]) == Some(1.0)
            && s.value("myscanner_ingest_measurements_stored_total", &[]) == Some(1.0)
    })
    .await;
    let rejections = expect_json(app.get("/api/v1/ingest-rejections", &operator).await, StatusCode::OK).await;
    assert_eq!(rejections["items"].as_array().unwrap().len(), 2, "what is counted is what operators see");
    assert_eq!(scrape.value("myscanner_ingest_rejections_total", &[("reason", "other")]), None);
}

#[tokio::test]
async fn the_security_queue_shows_waiting_scans_and_how_long_the_oldest_has_been_due() {
    let (app, metrics) = spawn_with(|c| {
        c.security.scheduler = false;
        c.security.workers = 0;
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let empty = Scrape::of(&metrics).await;
    assert_eq!(empty.get("myscanner_security_queue_jobs", &[("kind", "internal"), ("state", "queued")]), 0.0);
    assert_eq!(empty.get("myscanner_security_queue_oldest_due_seconds", &[("kind", "internal")]), 0.0);

    let setting = t.path(&format!("/security/devices/{}/internal", t.device_id));
    assert_eq!(app.put(&setting, &t.admin_token, json!({"enabled": true})).await.status(), StatusCode::NO_CONTENT);
    let run = t.path(&format!("/security/devices/{}/internal/run", t.device_id));
    assert_eq!(app.post(&run, &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    // Due for an hour, as if no scanner had claimed it since.
    sqlx::query(
        "UPDATE security_scan_jobs SET not_before = now() - interval '1 hour', enqueued_at = now() - interval '1 hour'",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let queued = Scrape::of(&metrics).await;
    assert_eq!(queued.get("myscanner_security_queue_jobs", &[("kind", "internal"), ("state", "queued")]), 1.0);
    assert_eq!(queued.get("myscanner_security_queue_jobs", &[("kind", "internal"), ("state", "running")]), 0.0);
    assert_eq!(queued.get("myscanner_security_queue_jobs", &[("kind", "external"), ("state", "queued")]), 0.0);
    assert!(queued.get("myscanner_security_queue_oldest_due_seconds", &[("kind", "internal")]) >= 3600.0);
    assert_eq!(queued.get("myscanner_security_queue_oldest_due_seconds", &[("kind", "external")]), 0.0);

    // Claimed by its scanner: running, no longer waiting.
    let claim = "/api/v1/agent/security-scans/claim?wait=1";
    expect_json(app.post(claim, &t.device_credential, json!({})).await, StatusCode::OK).await;
    let running = Scrape::of(&metrics).await;
    assert_eq!(running.get("myscanner_security_queue_jobs", &[("kind", "internal"), ("state", "queued")]), 0.0);
    assert_eq!(running.get("myscanner_security_queue_jobs", &[("kind", "internal"), ("state", "running")]), 1.0);
    assert_eq!(running.get("myscanner_security_queue_oldest_due_seconds", &[("kind", "internal")]), 0.0);
}

#[tokio::test]
async fn open_tunnels_and_sessions_are_those_this_replica_holds() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let none = Scrape::of(&metrics).await;
    assert_eq!(
        (none.get("myscanner_remote_tunnels_open", &[]), none.get("myscanner_remote_sessions_open", &[])),
        (0.0, 0.0)
    );

    let outbox = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, outbox.path());
    config.settings = Settings { measurement_transfer: false, allow_remote_control: true, ..Settings::default() };
    config.remote_control_target = echo_server().await;
    let agent = Agent::start(config).await.expect("agent starts");
    eventually_scraped(&metrics, "the scanner's tunnel", |s| {
        s.value("myscanner_remote_tunnels_open", &[]) == Some(1.0)
    })
    .await;

    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    assert_eq!(remote::echo(&mut session, b"ping").await, b"ping");
    let open = Scrape::of(&metrics).await;
    assert_eq!(open.get("myscanner_remote_sessions_open", &[]), 1.0);
    let upgrade = [("route", "/api/v1/workgroups/{workgroup_id}/devices/{device_id}/remote"), ("status", "101")];
    assert_eq!(open.get("myscanner_http_requests_total", &upgrade), 1.0);

    session.close(None).await.unwrap();
    eventually_scraped(&metrics, "the session's end", |s| s.value("myscanner_remote_sessions_open", &[]) == Some(0.0))
        .await;
    agent.stop().await;
    eventually_scraped(&metrics, "the tunnel's end", |s| s.value("myscanner_remote_tunnels_open", &[]) == Some(0.0))
        .await;
}

#[tokio::test]
async fn database_pools_report_their_size_use_and_limit() {
    let (app, metrics) = spawn_with(|_| {}).await;
    let scrape = Scrape::of(&metrics).await;
    let api = [("pool", "api")];
    let max = f64::from(app.config.database.max_connections);
    assert_eq!(scrape.get("myscanner_db_pool_max_connections", &api), max);
    assert!((1.0..=max).contains(&scrape.get("myscanner_db_pool_connections", &api)), "the pool holds connections");
    assert!(
        scrape.get("myscanner_db_pool_idle_connections", &api) <= scrape.get("myscanner_db_pool_connections", &api)
    );
    assert_eq!(scrape.get("myscanner_db_pool_max_connections", &[("pool", "ingest")]), 2.0, "the consumer's own");
    assert_eq!(scrape.get("myscanner_metrics_source_up", &[("source", "database")]), 1.0);
    assert_eq!(scrape.get("myscanner_metrics_source_up", &[("source", "broker")]), 1.0);
}

#[tokio::test]
async fn a_source_that_cannot_be_read_is_left_out_and_reported_down() {
    // No consumer has declared the ingest queue: the broker has no depth to give.
    let (_app, metrics) = spawn_with(|c| c.ingest.enabled = false).await;
    let scrape = Scrape::of(&metrics).await;
    assert_eq!(scrape.get("myscanner_metrics_source_up", &[("source", "broker")]), 0.0);
    assert_eq!(scrape.value("myscanner_ingest_queue_messages", &[]), None, "no figure rather than a wrong one");
    assert_eq!(scrape.get("myscanner_metrics_source_up", &[("source", "database")]), 1.0);
    assert!(scrape.value("myscanner_security_queue_jobs", &[("kind", "internal")]).is_some());
    assert_eq!(scrape.get("myscanner_remote_tunnels_open", &[]), 0.0, "what needs no source is still there");
}
