//! Who may open a remote session, and what ends one: a scanner that cannot take it, a
//! caller without `control_devices` in the device's workgroup, idleness, an admin, remote
//! control switched off at the scanner, and the user losing the authority that opened it.

use std::time::{Duration, Instant};

use myscanner_tests::remote::{self, close_reason, echo, echo_server, session_url};
use myscanner_tests::{TestApp, eventually, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Scene, agent, online, refused, scene_with, sessions, wait_online};

#[tokio::test]
async fn sessions_to_a_scanner_that_cannot_take_them_are_refused_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let url = session_url(&app.base_url, t.workgroup_id, t.device_id);

    // Remote control was never switched on at the scanner.
    refused(&app, &url, &t.admin_token, StatusCode::CONFLICT, "remote-control-disabled").await;

    // Switched on, but the scanner is offline: refused within a second.
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&app, &app.base_url, &t.device_credential, echo_server().await, &dir).await;
    agent.stop().await;
    let started = Instant::now();
    refused(&app, &url, &t.admin_token, StatusCode::CONFLICT, "device-offline").await;
    assert!(started.elapsed() < Duration::from_secs(1), "an offline scanner is an error at once");

    // Online, but the service behind the scanner is down: 502, not a hanging socket.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let agent = self::agent(&app, &app.base_url, &t.device_credential, closed_port, &dir).await;
    wait_online(&app, &t).await;
    refused(&app, &url, &t.admin_token, StatusCode::BAD_GATEWAY, "device-service-unreachable").await;
    assert!(sessions(&app, &t).await.is_empty(), "refused sessions never started");
    agent.stop().await;
}

/// The scanner is online and takes sessions: only members with `control_devices` in the
/// device's own workgroup may open one.
#[tokio::test]
async fn sessions_need_control_devices_in_the_device_s_workgroup() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|_| {}).await;
    let other = app.tenant(&app.operator().await, "Rival").await;

    // Without `control_devices`, or from another workgroup.
    let (_, viewer) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    refused(&app, &url, &viewer, StatusCode::FORBIDDEN, "forbidden").await;
    let (status, _) = remote::open(&url, &other.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let cross = session_url(&app.base_url, other.workgroup_id, t.device_id);
    let (status, _) = remote::open(&cross, &other.admin_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::NOT_FOUND, "a device is found only in its own workgroup");
    // API tokens are read-only: no remote control.
    let (status, _) = remote::open(&url, &t.api_token, &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A plain GET is told to upgrade.
    let path = t.path(&format!("/devices/{}/remote", t.device_id));
    expect_problem(app.get(&path, &t.admin_token).await, StatusCode::UPGRADE_REQUIRED, "websocket-required").await;
    assert!(sessions(&app, &t).await.is_empty(), "refused sessions never started");
    agent.stop().await;
}

#[tokio::test]
async fn the_tunnel_refuses_a_wrong_credential_and_a_scanner_with_remote_control_off() {
    let app = TestApp::spawn().await;
    let t = app.tenant(&app.operator().await, "Acme").await;
    let tunnel_url =
        myscanner_protocol::tunnel::websocket_url(&app.base_url, myscanner_protocol::tunnel::AGENT_TUNNEL_PATH);
    let (status, _) = remote::open(&tunnel_url, "mysd_bogus.credential", &app.tls).await.unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    refused(&app, &tunnel_url, &t.device_credential, StatusCode::CONFLICT, "remote-control-disabled").await;
}

#[tokio::test]
async fn idle_sessions_time_out() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|c| c.remote.idle_timeout_secs = 1).await;
    let mut idle = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(close_reason(&mut idle).await, "idle_timeout");
    agent.stop().await;
}

/// Admins end sessions; only admins may, and only active sessions.
#[tokio::test]
async fn admins_end_active_sessions() {
    let Scene { app, t, agent, url, _outbox } = scene_with(|_| {}).await;
    let mut ended = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    assert_eq!(echo(&mut ended, b"x").await, b"x");
    let active = sessions(&app, &t).await.into_iter().find(|s| s["ended_at"].is_null()).unwrap();
    let end = t.path(&format!("/remote-sessions/{}/end", active["id"].as_str().unwrap()));
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
    let unknown = t.path(&format!("/remote-sessions/{}/end", Uuid::now_v7()));
    expect_problem(app.post(&unknown, &t.admin_token, Value::Null).await, StatusCode::NOT_FOUND, "not-found").await;

    agent.stop().await;
}

/// Remote control switched off on the scanner: the running session ends, new ones are
/// refused at once, and the tunnel closes.
#[tokio::test]
async fn switching_remote_control_off_ends_sessions_and_closes_the_tunnel() {
    let Scene { app, t, mut agent, url, _outbox } = scene_with(|_| {}).await;
    let mut running = remote::open(&url, &t.admin_token, &app.tls).await.unwrap();
    agent.set_remote_control(false).await.unwrap();
    assert_eq!(close_reason(&mut running).await, "remote_control_disabled");
    refused(&app, &url, &t.admin_token, StatusCode::CONFLICT, "remote-control-disabled").await;
    eventually(Duration::from_secs(5), "the tunnel closed", || async { online(&app, &t).await.is_empty() }).await;
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
    let members = t.path("/members");
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
        let path = t.path("/remote-sessions");
        let all = expect_json(app.get(&path, &fresh).await, StatusCode::OK).await["items"].as_array().unwrap().clone();
        all.len() == 3 && all.iter().all(|s| s["close_reason"] == "access_revoked")
    })
    .await;
    agent.stop().await;
}
