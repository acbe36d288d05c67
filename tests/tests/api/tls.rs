//! Encrypted scanner links end to end: the service serving HTTPS and WSS itself, agents and
//! the port forwarder that trust only the CA they pin, refusals that say why, an agent that
//! waits out a cloud that is down, and certificate renewal without a restart.

use std::sync::Arc;
use std::time::Duration;

use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_agent::config::DeviceConfig;
use myscanner_protocol::sync::{Collection, Record};
use myscanner_tests::logs::Logs;
use myscanner_tests::tls::{Issued, TestCa};
use myscanner_tests::{TestApp, eventually, expect_json, remote};
use reqwest::StatusCode;
use serde_json::json;

const LOOPBACK: &[&str] = &["127.0.0.1"];

/// A service serving `certificate` over HTTPS; its test clients trust `ca`.
async fn https_app(ca: &TestCa, certificate: &Issued, dir: &tempfile::TempDir) -> TestApp {
    TestApp::spawn_tls(ca, certificate, dir.path(), |_| {}).await
}

/// An agent's configuration for `app`, pinning `ca` (written into `dir`).
fn pinned_config(app: &TestApp, credential: &str, ca: &TestCa, dir: &tempfile::TempDir) -> DeviceConfig {
    let mut config = app.agent_config(credential, &dir.path().join("outbox"));
    config.ca_file = Some(ca.write(dir.path()));
    config.sync_dir = Some(dir.path().join("sync"));
    config
}

#[tokio::test]
async fn a_pinned_agent_reports_claims_syncs_and_carries_sessions_over_https_and_wss() {
    let (ca, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let app = https_app(&ca, &ca.issue(LOOPBACK), &dir).await;
    assert!(app.base_url.starts_with("https://"));
    let t = app.tenant(&app.operator().await, "Acme").await;
    let echo = remote::echo_server().await;
    let mut config = pinned_config(&app, &t.device_credential, &ca, &dir);
    config.remote_control_target = echo;
    config.settings = Settings {
        measurement_transfer: false,
        allow_remote_control: true,
        reference_scan_sync: false,
        load_list_sync: true,
    };
    let agent = Agent::start(config).await.expect("the agent reaches the service over HTTPS");

    // The settings report arrived.
    let device_path = format!("/api/v1/workgroups/{}/devices/{}", t.workgroup_id, t.device_id);
    let device = expect_json(app.get(&device_path, &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(device["settings"]["allow_remote_control"], true);
    assert_eq!(device["settings"]["load_list_sync"], true);

    // An internal scan is claimed and reported (it fails: this machine's networks are off
    // the agent's allow-list, which is the point of the allow-list).
    let security = format!("/api/v1/workgroups/{}/security/devices/{}/internal", t.workgroup_id, t.device_id);
    let enable = app.request(reqwest::Method::PUT, &security, Some(&t.admin_token)).json(&json!({"enabled": true}));
    assert_eq!(enable.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(app.post(&format!("{security}/run"), &t.admin_token, json!({})).await.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(20), "the agent's internal-scan report", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM security_scans").fetch_one(&app.db).await.unwrap() == 1
    })
    .await;

    // A list edited in the dashboard reaches the scanner's copy.
    let list_id = uuid::Uuid::now_v7();
    let list_path = format!("/api/v1/workgroups/{}/sites/{}/sync/load-lists/{list_id}", t.workgroup_id, t.site_id);
    let body =
        json!({"list": {"name": "Products", "items": [{"code": "GR", "label": "Gravel", "active": true, "order": 0}]}});
    let put = app.request(reqwest::Method::PUT, &list_path, Some(&t.admin_token)).json(&body);
    assert_eq!(put.send().await.unwrap().status(), StatusCode::OK);
    let lists = agent.sync(Collection::LoadLists).expect("list sync on");
    let expected: Option<Record> = serde_json::from_value(body["list"].clone()).ok().map(Record::LoadList);
    eventually(Duration::from_secs(10), "the list on the scanner", || async { lists.get(list_id) == expected }).await;

    // A remote session crosses the WSS tunnel with every byte intact.
    let url = remote::session_url(&app.base_url, t.workgroup_id, t.device_id);
    assert!(url.starts_with("wss://"));
    eventually(Duration::from_secs(10), "the tunnel", || async {
        remote::open(&url, &t.admin_token, &app.tls).await.is_ok()
    })
    .await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|_| rand::random::<u8>()).collect();
    assert!(remote::echo(&mut session, &payload).await == payload, "bytes intact through TLS both ways");
    drop(session);

    // And so does one through the port forwarder, also over WSS.
    remote::through_forwarder(myscanner::remote::forward::Target {
        api_url: app.base_url.clone(),
        workgroup_id: t.workgroup_id,
        device_id: t.device_id,
        token: t.admin_token.clone(),
        tls: app.tls.clone(),
    })
    .await;

    // Browsers are told to come back over HTTPS only — but not to this machine's names,
    // which a development service would pin for every port.
    let hsts = async |host: &str| {
        let health = app.client.get(app.url("/healthz")).header("host", host).send().await.unwrap();
        health.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(hsts("myscanner.example").await.as_deref(), Some("max-age=31536000"));
    assert_eq!(hsts("localhost:8443").await, None);
    assert_eq!(hsts("[::1]:8443").await, None);
    agent.stop().await;
}

/// The log lines of an agent pinned to `ca` trying for a few seconds to reach a service
/// serving `served`; it must not get through. (Its credential is never looked at: the
/// agent gives up on the service before it sends it.)
async fn refused_attempts(logs: &Logs, ca: &TestCa, served: &Issued) -> String {
    let dir = tempfile::tempdir().unwrap();
    // Up with a good certificate (so that the test knows it is up), then renewed to the bad one.
    let app = https_app(ca, &ca.issue(LOOPBACK), &dir).await;
    let reloads = logs.lines_with("TLS certificate reloaded").len();
    served.write(dir.path(), "service");
    eventually(Duration::from_secs(10), "the bad certificate served", || async {
        logs.lines_with("TLS certificate reloaded").len() > reloads
    })
    .await;
    let attempts = logs.lines_with("cannot reach MyScanner yet").len();
    let config = pinned_config(&app, "mysd_never.sent", ca, &dir);
    tokio::select! {
        started = Agent::start(config) => panic!("the agent got through: {:?}", started.map(|a| a.identity)),
        () = eventually(Duration::from_secs(30), "a refused attempt in the agent's log", || async {
            logs.lines_with("cannot reach MyScanner yet").len() > attempts
        }) => {}
    }
    logs.lines_with("cannot reach MyScanner yet")[attempts..].join("\n")
}

#[tokio::test]
async fn an_untrusted_expired_or_misnamed_certificate_is_refused_with_a_clear_line() {
    let logs = Logs::capture();
    let pinned = TestCa::new();
    let other = TestCa::new();
    let unknown = refused_attempts(&logs, &pinned, &other.issue(LOOPBACK)).await;
    assert!(unknown.contains("TLS refused: the server's certificate is not signed by a trusted CA"), "{unknown}");
    let expired = refused_attempts(&logs, &pinned, &pinned.issue_expired(LOOPBACK)).await;
    assert!(expired.contains("TLS refused: the server's certificate has expired"), "{expired}");
    let misnamed = refused_attempts(&logs, &pinned, &pinned.issue(&["cloud.example"])).await;
    assert!(misnamed.contains("TLS refused: the server's certificate is not valid for"), "{misnamed}");
}

#[tokio::test]
async fn plain_links_to_other_machines_are_refused_unless_allowed() {
    let logs = Logs::capture();
    // A service that tells its devices a plain broker address on another machine.
    let app = TestApp::spawn_with(|c| c.broker.device_url = "amqp://mq.example:5672/%2f".into()).await;
    let t = app.tenant(&app.operator().await, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());

    // http:// to another machine: refused at once, before any connection.
    config.api_url = "http://myscanner.example".into();
    let refused = Agent::start(config.clone()).await.err().expect("refused").to_string();
    assert!(refused.contains("refusing unencrypted http:// to myscanner.example"), "{refused}");

    // Loopback needs no permission. The broker address is refused by the publisher, which
    // says so, rather than sending the device credential across the network in clear.
    config.api_url = app.base_url.clone();
    let agent = Agent::start(config.clone()).await.expect("plain http to this machine is fine");
    let measurement =
        myscanner_agent::simulate::MeasurementFactory::new(t.device_id, t.site_id, false).next(chrono::Utc::now());
    assert!(agent.record(&[measurement]).unwrap());
    eventually(Duration::from_secs(5), "the publisher's refusal", || async {
        !logs.lines_with("refusing unencrypted amqp:// to mq.example").is_empty()
    })
    .await;
    assert_eq!(agent.pending(), 1, "the measurement waits in the outbox");
    agent.stop().await;

    // allow_insecure is an explicit choice, warned about at every start. (Measurement
    // transfer off: this test reaches no other machine.)
    config.allow_insecure = true;
    config.settings.measurement_transfer = false;
    Agent::start(config).await.expect("allowed").stop().await;
    assert_eq!(logs.lines_with("allow_insecure is set").len(), 1);

    // The port forwarder holds the same line.
    let target = myscanner::remote::forward::Target {
        api_url: "http://myscanner.example".into(),
        workgroup_id: t.workgroup_id,
        device_id: t.device_id,
        token: t.admin_token.clone(),
        tls: app.tls.clone(),
    };
    let refused = myscanner::remote::forward::run("127.0.0.1:0".parse().unwrap(), target, false).await;
    assert!(refused.unwrap_err().to_string().contains("refusing unencrypted http://"));
}

#[tokio::test]
async fn an_agent_started_while_the_cloud_is_down_comes_up_when_the_cloud_does() {
    let (ca, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let mut app = https_app(&ca, &ca.issue(LOOPBACK), &dir).await;
    let t = app.tenant(&app.operator().await, "Acme").await;
    let mut config = pinned_config(&app, &t.device_credential, &ca, &dir);
    config.settings.measurement_transfer = false;
    app.stop().await;
    // The port stays taken (bound, not listening: connections are refused) so that no other
    // test's service lands on it meanwhile.
    let placeholder = tokio::net::TcpSocket::new_v4().unwrap();
    placeholder.set_reuseaddr(true).unwrap();
    placeholder.bind(app.config.server.listen).unwrap();

    let starting = tokio::spawn(Agent::start(config));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!starting.is_finished(), "the agent keeps trying while the cloud is down");
    drop(placeholder);
    app.start().await;
    let agent = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("the agent comes up once the cloud does")
        .unwrap()
        .expect("and identifies itself");
    assert_eq!(agent.identity.device_id, t.device_id);
    agent.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let logs = Logs::capture();
    let (first, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let app = https_app(&first, &first.issue(LOOPBACK), &dir).await;
    // A new connection each time, trusting one CA: which certificate is served shows.
    let healthy = |tls: Arc<rustls::ClientConfig>| {
        let url = app.url("/healthz");
        async move {
            let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
            client.get(url).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
        }
    };
    assert!(healthy(first.client_config()).await);

    // Renewed (from another CA, so there is no mistaking which one is served).
    let renewed = TestCa::new();
    renewed.issue(LOOPBACK).write(dir.path(), "service");
    eventually(Duration::from_secs(10), "the renewed certificate served", || healthy(renewed.client_config())).await;
    assert!(!healthy(first.client_config()).await, "the old certificate is no longer served");

    // A broken renewal (a key that does not match) leaves the current certificate in place.
    std::fs::write(dir.path().join("service.key"), first.issue(LOOPBACK).key_pem).unwrap();
    eventually(Duration::from_secs(10), "the broken files noticed", || async {
        !logs.lines_with("do not load").is_empty()
    })
    .await;
    assert!(healthy(renewed.client_config()).await);
}

#[tokio::test]
async fn the_service_reaches_postgresql_over_tls_when_the_url_asks_for_it() {
    // Production URLs say `sslmode=verify-full` (with `sslrootcert` for a private CA); the
    // development server's certificate is a self-signed one for its host name, so this
    // shows the encryption (`require`), not the verification.
    let app = TestApp::spawn_with(|c| {
        c.database.url = myscanner::config::Secret::new(format!("{}?sslmode=require", c.database.url.expose()))
    })
    .await;
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(encrypted);
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = current_database() AND ssl",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(sessions >= 2, "the service's own connections are encrypted too");
}

#[tokio::test]
async fn an_agent_whose_credential_is_refused_gives_up_at_once() {
    // Retrying cannot mend a refused credential: the agent stops (status 78 from the
    // command) instead of knocking for ever.
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = app.agent_config("mysd_00000000000000000000000000000000_revoked", dir.path());
    let started = tokio::time::timeout(Duration::from_secs(10), Agent::start(config)).await;
    let refused = format!("{:#}", started.expect("no retrying").err().expect("refused"));
    assert!(refused.contains("401"), "{refused}");
}
