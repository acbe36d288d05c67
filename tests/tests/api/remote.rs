//! Remote control end to end: a real agent holds its tunnel to the service, an echo server
//! stands behind it as the scanner's VNC, and users open sessions over WebSockets — through
//! one replica or across two. Here: bytes through tunnels, and tunnels through outages,
//! restarts and replicas; `remote/sessions.rs`: who may open a session, and what ends one.

mod sessions;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_tests::remote::{self, close_reason, echo, echo_server, session_url};
use myscanner_tests::{TcpProxy, Tenant, TestApp, eventually, expect_json, expect_problem};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

const REMOTE_ON: Settings = Settings {
    measurement_transfer: false,
    allow_remote_control: true,
    reference_scan_sync: false,
    load_list_sync: false,
};

/// An agent for the tenant's scanner with remote control on, its sessions going to `target`.
async fn agent(app: &TestApp, api_url: &str, credential: &str, target: SocketAddr, dir: &tempfile::TempDir) -> Agent {
    let mut config = app.agent_config(credential, dir.path());
    config.api_url = api_url.to_owned();
    config.settings = REMOTE_ON;
    config.remote_control_target = target;
    Agent::start(config).await.expect("agent starts")
}

async fn online(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let path = t.path("/remote/online");
    expect_json(app.get(&path, &t.admin_token).await, StatusCode::OK).await.as_array().unwrap().clone()
}

async fn wait_online(app: &TestApp, t: &Tenant) {
    eventually(Duration::from_secs(10), "the scanner's tunnel", || async {
        online(app, t).await.iter().any(|d| d["device_id"] == t.device_id.to_string())
    })
    .await;
}

async fn sessions(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let path = t.path("/remote-sessions");
    expect_json(app.get(&path, &t.admin_token).await, StatusCode::OK).await["items"].as_array().unwrap().clone()
}

/// The one session of the tenant, once it has ended.
async fn ended_session(app: &TestApp, t: &Tenant) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let newest = sessions(app, t).await.into_iter().next().unwrap_or_default();
        if !newest["ended_at"].is_null() {
            return newest;
        }
        assert!(Instant::now() < deadline, "the session's end never reached the audit: {newest}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A service, a tenant, and its scanner's agent online with an echo server behind it.
struct Scene {
    app: TestApp,
    t: Tenant,
    agent: Agent,
    /// The tenant's session URL on `app`.
    url: String,
    _outbox: tempfile::TempDir,
}

async fn scene_with(adjust: impl FnOnce(&mut myscanner::config::Config)) -> Scene {
    let app = TestApp::spawn_with(adjust).await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let outbox = tempfile::tempdir().unwrap();
    let agent = agent(&app, &app.base_url, &t.device_credential, echo_server().await, &outbox).await;
    wait_online(&app, &t).await;
    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);
    Scene { app, t, agent, url, _outbox: outbox }
}

fn random(len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len];
    rand::rng().fill_bytes(&mut payload);
    payload
}

/// Opening a session to `url` as `token` must be refused with `status` and problem `code`.
async fn refused(app: &TestApp, url: &str, token: &str, status: StatusCode, code: &str) {
    let (actual, problem) = remote::open(url, token, &app.tls).await.unwrap_err();
    assert_eq!((actual, problem["type"].as_str().unwrap()), (status, format!("urn:myscanner:problem:{code}").as_str()));
}

#[tokio::test]
async fn large_payloads_cross_intact_both_ways_and_the_session_is_audited() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|_| {}).await;

    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    let payload = random(8 * 1024 * 1024);
    assert!(echo(&mut session, &payload).await == payload, "8 MiB each way, intact");
    // An active session is listed as such.
    let active = sessions(&app, &t).await;
    assert_eq!(active.len(), 1);
    assert!(active[0]["ended_at"].is_null());
    session.close(None).await.unwrap();

    let audit = ended_session(&app, &t).await;
    assert_eq!(audit["close_reason"], "client_closed");
    assert_eq!(audit["device_id"], t.device_id.to_string());
    assert_eq!(audit["user_id"], t.admin_id.to_string());
    assert_eq!(audit["client_address"], "127.0.0.1");
    assert_eq!(audit["bytes_to_device"], payload.len());
    assert_eq!(audit["bytes_from_device"], payload.len());
    agent.stop().await;
}

#[tokio::test]
async fn many_concurrent_sessions_share_one_tunnel() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|_| {}).await;

    let transfers = (0..32).map(|_| {
        let (url, token, tls) = (url.clone(), t.admin_token.clone(), app.tls.clone());
        tokio::spawn(async move {
            let mut session = remote::open(&url, &token, &tls).await.expect("session opens");
            let payload = random(256 * 1024);
            let back = echo(&mut session, &payload).await;
            session.close(None).await.unwrap();
            back == payload
        })
    });
    for transfer in futures_util::future::join_all(transfers).await {
        assert!(transfer.unwrap(), "every session's bytes came back intact");
    }
    eventually(Duration::from_secs(10), "32 ended sessions", || async {
        let all = sessions(&app, &t).await;
        all.len() == 32 && all.iter().all(|s| s["close_reason"] == "client_closed")
    })
    .await;
    agent.stop().await;
}

/// A service, a tenant, and its scanner's agent online through a proxy the test controls
/// (it can cut or freeze the link, as a network or a stopped process would); with the
/// tenant's session URL and the agent's outbox.
async fn proxied_scene() -> (TestApp, Tenant, TcpProxy, Agent, String, tempfile::TempDir) {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let proxy = TcpProxy::start(app.base_url.trim_start_matches("http://").parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&app, &format!("http://{}", proxy.addr), &t.device_credential, echo_server().await, &dir).await;
    wait_online(&app, &t).await;
    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);
    (app, t, proxy, agent, url, dir)
}

#[tokio::test]
async fn a_dropped_tunnel_ends_its_sessions_and_the_agent_comes_back() {
    let (app, t, proxy, agent, url, _dir) = proxied_scene().await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    assert_eq!(echo(&mut session, b"hello").await, b"hello");

    proxy.cut();
    assert_eq!(close_reason(&mut session).await, "tunnel_lost");
    let audit = ended_session(&app, &t).await;
    assert_eq!(audit["close_reason"], "tunnel_lost");
    assert_eq!(audit["bytes_to_device"], 5);
    eventually(Duration::from_secs(5), "the scanner offline", || async { online(&app, &t).await.is_empty() }).await;

    // The network heals: the agent's backoff brings the tunnel back.
    proxy.restore();
    wait_online(&app, &t).await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens again");
    assert_eq!(echo(&mut session, b"again").await, b"again");
    agent.stop().await;
}

#[tokio::test]
async fn the_agent_reconnects_after_the_service_restarts() {
    let Scene { mut app, t, agent, url, _outbox } = scene_with(|_| {}).await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");

    app.restart().await;
    assert_eq!(close_reason(&mut session).await, "service_shutdown");
    assert_eq!(ended_session(&app, &t).await["close_reason"], "service_shutdown");
    wait_online(&app, &t).await;
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session after the restart");
    assert_eq!(echo(&mut session, b"back").await, b"back");
    agent.stop().await;
}

#[tokio::test]
async fn a_session_reaching_another_replica_is_routed_to_the_tunnel() {
    let app = TestApp::spawn().await;
    let mut replica = app.spawn_replica().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    // The scanner's tunnel is held by the first instance; the user reaches the second.
    let agent = agent(&app, &app.base_url, &t.device_credential, echo_server().await, &dir).await;
    wait_online(&app, &t).await;
    let url = session_url(&replica.base_url, t.workgroup_id, t.device_id);
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("routed session opens");
    let payload = random(2 * 1024 * 1024);
    assert!(echo(&mut session, &payload).await == payload);

    // An admin on the first instance ends the session the second one serves.
    let active = sessions(&app, &t).await.remove(0);
    let end = t.path(&format!("/remote-sessions/{}/end", active["id"].as_str().unwrap()));
    expect_json(app.post(&end, &t.admin_token, Value::Null).await, StatusCode::ACCEPTED).await;
    assert_eq!(close_reason(&mut session).await, "ended_by_admin");
    let audit = ended_session(&app, &t).await;
    assert_eq!(audit["close_reason"], "ended_by_admin");
    assert_eq!(audit["bytes_from_device"], payload.len());

    // The port forwarder of `myscanner remote`, through the second instance.
    remote::through_forwarder(myscanner::remote::forward::Target {
        api_url: replica.base_url.clone(),
        workgroup_id: t.workgroup_id,
        device_id: t.device_id,
        token: t.admin_token.clone(),
        tls: app.tls.clone(),
    })
    .await;

    // The relay route takes replica tokens only, each for one relay: a user's token, and a
    // genuine replica token replayed for a session already relayed, are refused.
    let session_id: Uuid = active["id"].as_str().unwrap().parse().unwrap();
    let relay = format!("/internal/v1/tunnels/{}/sessions/{session_id}", t.device_id);
    expect_problem(app.get(&relay, &t.admin_token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let replayed = myscanner::auth::jwt::JwtKeys::new(&app.config.auth).issue_replica(session_id, t.device_id).unwrap();
    let url = myscanner_protocol::tunnel::websocket_url(&app.base_url, &relay);
    let (status, _) = remote::open(&url, &replayed, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    replica.stop().await;
    agent.stop().await;
}

#[tokio::test]
async fn a_frozen_scanner_is_told_apart_from_an_unreachable_service() {
    let (app, t, proxy, agent, url, _dir) = proxied_scene().await;

    // The agent stops answering (as under SIGSTOP) while its tunnel stays open.
    proxy.freeze();
    refused(&app, &url, &t.admin_token, StatusCode::GATEWAY_TIMEOUT, "scanner-not-answering").await;
    // It wakes: sessions work again.
    proxy.thaw();
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    assert_eq!(echo(&mut session, b"awake").await, b"awake");
    agent.stop().await;
}
