//! Remote control end to end: a real agent holds its tunnel to the service, an echo server
//! stands behind it as the scanner's VNC, and users open sessions over WebSockets — through
//! one replica or across two.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_tests::remote::{self, close_reason, echo, echo_server, session_url};
use myscanner_tests::{TcpProxy, Tenant, TestApp, eventually, expect_json, expect_problem};
use rand::RngCore;
use reqwest::StatusCode;
use serde_json::{Value, json};
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
    let path = format!("/api/v1/workgroups/{}/remote/online", t.workgroup_id);
    expect_json(app.get(&path, &t.admin_token).await, StatusCode::OK).await.as_array().unwrap().clone()
}

async fn wait_online(app: &TestApp, t: &Tenant) {
    eventually(Duration::from_secs(10), "the scanner's tunnel", || async {
        online(app, t).await.iter().any(|d| d["device_id"] == t.device_id.to_string())
    })
    .await;
}

async fn sessions(app: &TestApp, t: &Tenant) -> Vec<Value> {
    let path = format!("/api/v1/workgroups/{}/remote-sessions", t.workgroup_id);
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

#[tokio::test]
async fn sessions_are_refused_clearly_and_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Rival").await;
    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);

    // Remote control was never switched on at the scanner.
    let (status, problem) = remote::open(&url, &t.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::CONFLICT, "urn:myscanner:problem:remote-control-disabled")
    );

    // Switched on, but the scanner is offline: refused within a second.
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&app, &app.base_url, &t.device_credential, echo_server().await, &dir).await;
    agent.stop().await;
    let started = Instant::now();
    let (status, problem) = remote::open(&url, &t.admin_token, &app.tls).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "an offline scanner is an error at once");
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::CONFLICT, "urn:myscanner:problem:device-offline")
    );

    // Online, but the service behind the scanner is down: 502, not a hanging socket.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let agent = self::agent(&app, &app.base_url, &t.device_credential, closed_port, &dir).await;
    wait_online(&app, &t).await;
    let (status, problem) = remote::open(&url, &t.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::BAD_GATEWAY, "urn:myscanner:problem:device-service-unreachable")
    );

    // Without `control_devices`, or from another workgroup.
    let (_, viewer) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    let (status, problem) = remote::open(&url, &viewer, &app.tls).await.unwrap_err();
    assert_eq!((status, problem["type"].as_str().unwrap()), (StatusCode::FORBIDDEN, "urn:myscanner:problem:forbidden"));
    let (status, _) = remote::open(&url, &other.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let cross = session_url(&app.base_url, other.workgroup_id, t.device_id);
    let (status, _) = remote::open(&cross, &other.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND, "a device is found only in its own workgroup");
    // API tokens are read-only: no remote control.
    let (status, _) = remote::open(&url, &t.api_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A plain GET is told to upgrade.
    let path = format!("/api/v1/workgroups/{}/devices/{}/remote", t.workgroup_id, t.device_id);
    expect_problem(app.get(&path, &t.admin_token).await, StatusCode::UPGRADE_REQUIRED, "websocket-required").await;

    // The tunnel itself: a wrong credential, and remote control off, are refused.
    let tunnel_url =
        myscanner_protocol::tunnel::websocket_url(&app.base_url, myscanner_protocol::tunnel::AGENT_TUNNEL_PATH);
    let (status, _) = remote::open(&tunnel_url, "mysd_bogus.credential", &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, problem) = remote::open(&tunnel_url, &other.device_credential, &app.tls).await.unwrap_err();
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::CONFLICT, "urn:myscanner:problem:remote-control-disabled")
    );
    assert!(sessions(&app, &t).await.is_empty(), "refused sessions never started");
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
async fn admins_end_sessions_idle_ones_time_out_and_switching_off_ends_them() {
    let Scene { app, t, mut agent, url, _outbox } = scene_with(|c| c.remote.idle_timeout_secs = 1).await;

    // Idle for the timeout: closed.
    let mut idle = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(close_reason(&mut idle).await, "idle_timeout");

    // Ended by an admin; only admins may, and only active sessions.
    let mut ended = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut ended, b"x").await, b"x");
    let active = sessions(&app, &t).await.into_iter().find(|s| s["ended_at"].is_null()).unwrap();
    let end = format!("/api/v1/workgroups/{}/remote-sessions/{}/end", t.workgroup_id, active["id"].as_str().unwrap());
    let (_, operator_only) = app.member(&t.admin_token, t.workgroup_id, &["control_devices"]).await;
    expect_problem(app.post(&end, &operator_only, Value::Null).await, StatusCode::FORBIDDEN, "forbidden").await;
    let accepted = expect_json(app.post(&end, &t.admin_token, Value::Null).await, StatusCode::ACCEPTED).await;
    assert!(!accepted["end_requested_at"].is_null());
    assert_eq!(close_reason(&mut ended).await, "ended_by_admin");
    eventually(Duration::from_secs(5), "the end recorded", || async {
        let session = sessions(&app, &t).await.into_iter().find(|s| s["id"] == active["id"]).unwrap();
        session["close_reason"] == "ended_by_admin"
    })
    .await;
    expect_problem(app.post(&end, &t.admin_token, Value::Null).await, StatusCode::CONFLICT, "session-ended").await;
    let unknown = format!("/api/v1/workgroups/{}/remote-sessions/{}/end", t.workgroup_id, Uuid::now_v7());
    expect_problem(app.post(&unknown, &t.admin_token, Value::Null).await, StatusCode::NOT_FOUND, "not-found").await;

    // Remote control switched off on the scanner: the running session ends, new ones are
    // refused at once, and the tunnel closes.
    let mut running = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    agent.set_remote_control(false).await.unwrap();
    assert_eq!(close_reason(&mut running).await, "remote_control_disabled");
    let (status, problem) = remote::open(&url, &t.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::CONFLICT, "urn:myscanner:problem:remote-control-disabled")
    );
    eventually(Duration::from_secs(5), "the tunnel closed", || async { online(&app, &t).await.is_empty() }).await;
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
    let end = format!("/api/v1/workgroups/{}/remote-sessions/{}/end", t.workgroup_id, active["id"].as_str().unwrap());
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

// Several threads, as in the service: the session and the tunnel may then be woken in any order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_remote_control_off_is_always_recorded_as_such() {
    let Scene { app, t, mut agent, url, _outbox } = scene_with(|_| {}).await;
    // The tunnel closes right after the sessions end: that must never be taken for the cause.
    for round in 0..4 {
        let mut running = vec![];
        for _ in 0..6 {
            let mut session = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
            assert_eq!(echo(&mut session, b"x").await, b"x");
            running.push(session);
        }
        agent.set_remote_control(false).await.unwrap();
        for session in &mut running {
            assert_eq!(close_reason(session).await, "remote_control_disabled", "round {round}");
        }
        eventually(Duration::from_secs(10), "every end recorded", || async {
            sessions(&app, &t).await.iter().all(|s| !s["ended_at"].is_null())
        })
        .await;
        let reasons: Vec<Value> =
            sessions(&app, &t).await.into_iter().take(6).map(|s| s["close_reason"].clone()).collect();
        assert!(reasons.iter().all(|r| r == "remote_control_disabled"), "round {round}: {reasons:?}");
        agent.set_remote_control(true).await.unwrap();
        wait_online(&app, &t).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_their_user_loses_the_authority_that_opened_them() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|_| {}).await;
    let members = format!("/api/v1/workgroups/{}/members", t.workgroup_id);
    let revoked = async |session: &mut _| {
        assert_eq!(close_reason(session).await, "access_revoked");
    };

    // `control_devices` dropped.
    let (member, token) = app.member(&t.admin_token, t.workgroup_id, &["control_devices"]).await;
    let mut session = remote::open(&url, &token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"x").await, b"x");
    let drop = json!({"permissions": ["view_data"]});
    expect_json(app.patch(&format!("{members}/{member}"), &t.admin_token, drop).await, StatusCode::OK).await;
    revoked(&mut session).await;

    // Removed from the workgroup.
    let (member, token) = app.member(&t.admin_token, t.workgroup_id, &["control_devices"]).await;
    let mut session = remote::open(&url, &token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"x").await, b"x");
    let removed = app.delete(&format!("{members}/{member}"), &t.admin_token).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    revoked(&mut session).await;

    // Their password changed (by them, or by whoever holds their account now).
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut session, b"x").await, b"x");
    let change = json!({"current_password": myscanner_tests::PASSWORD, "new_password": "a brand new password"});
    let changed = app
        .request(reqwest::Method::PUT, "/api/v1/me/password", Some(&t.admin_token))
        .json(&change)
        .send()
        .await
        .unwrap();
    let fresh = expect_json(changed, StatusCode::OK).await["access_token"].as_str().unwrap().to_owned();
    revoked(&mut session).await;

    // The audit says so, for each.
    eventually(Duration::from_secs(10), "every end recorded", || async {
        let path = format!("/api/v1/workgroups/{}/remote-sessions", t.workgroup_id);
        let all = expect_json(app.get(&path, &fresh).await, StatusCode::OK).await["items"].as_array().unwrap().clone();
        all.len() == 3 && all.iter().all(|s| s["close_reason"] == "access_revoked")
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_frozen_scanner_is_told_apart_from_an_unreachable_service() {
    let (app, t, proxy, agent, url, _dir) = proxied_scene().await;

    // The agent stops answering (as under SIGSTOP) while its tunnel stays open.
    proxy.freeze();
    let (status, problem) = remote::open(&url, &t.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(
        (status, problem["type"].as_str().unwrap()),
        (StatusCode::GATEWAY_TIMEOUT, "urn:myscanner:problem:scanner-not-answering")
    );
    // It wakes: sessions work again.
    proxy.thaw();
    let mut session = remote::open(&url, &t.admin_token, &app.tls).await.expect("session opens");
    assert_eq!(echo(&mut session, b"awake").await, b"awake");
    agent.stop().await;
}
