//! Measurement ingest over AMQP, end to end: the reference agent publishes through the
//! real RabbitMQ into the real PostgreSQL, and every confirmed measurement is stored
//! exactly once — through duplicates, bad messages, revocation, a killed broker
//! connection, a service restart and a database outage.
//!
//! Here: agents and raw publishers against the broker's checks and the consumer's.
//! `ingest/outages.rs`: what ingest survives; `ingest/store.rs`: the batch insert's own
//! guarantees.

mod outages;
mod store;

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use myscanner_agent::Agent;
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::MeasurementV1;
use myscanner_tests::{Tenant, TestApp, broker, eventually, expect_json};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn factory(t: &Tenant, device_id: Uuid, mps: bool) -> MeasurementFactory {
    MeasurementFactory::new(device_id, t.site_id, mps)
}

/// Measurements with scan times PostgreSQL stores exactly (microseconds).
fn batch(factory: &mut MeasurementFactory, n: usize) -> Vec<MeasurementV1> {
    let now = Utc::now().duration_trunc(TimeDelta::microseconds(1)).unwrap();
    (0..n).map(|i| factory.next(now - TimeDelta::seconds(i as i64))).collect()
}

async fn start_agent(app: &TestApp, credential: &str, dir: &tempfile::TempDir) -> Agent {
    Agent::start(app.agent_config(credential, dir.path())).await.expect("agent starts")
}

async fn wait_stored(app: &TestApp, device_id: Uuid, n: i64) {
    eventually(WAIT, &format!("{n} stored measurements"), || async { app.stored(device_id).await >= n }).await;
    // And no more than that, a moment later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.stored(device_id).await, n, "each measurement stored exactly once");
}

#[tokio::test]
async fn agent_measurements_arrive_with_every_field_intact() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (mps_id, mps_credential) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    let (dir_lvs, dir_mps) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lvs = start_agent(&app, &t.device_credential, &dir_lvs).await;
    let mps = start_agent(&app, &mps_credential, &dir_mps).await;

    let sent_lvs = batch(&mut factory(&t, t.device_id, false), 40);
    let sent_mps = batch(&mut factory(&t, mps_id, true), 40);
    assert!(lvs.record(&sent_lvs).unwrap() && mps.record(&sent_mps).unwrap());
    assert!(lvs.drained(WAIT).await && mps.drained(WAIT).await, "the broker confirmed everything");
    wait_stored(&app, t.device_id, 40).await;
    wait_stored(&app, mps_id, 40).await;

    for sent in sent_lvs.iter().chain(&sent_mps) {
        // Numbers and times are compared as such (JSON spells 19 and 19.0, or trailing zeros
        // of fractional seconds, differently).
        let (row, volume, payload, carry_back, scanned_at): (
            Value,
            f64,
            Option<f64>,
            Option<f64>,
            chrono::DateTime<Utc>,
        ) = sqlx::query_as(
            "SELECT to_jsonb(m) - 'seq' - 'received_at' - 'volume_m3' - 'payload_t' - 'carry_back_m3' - 'scanned_at',
                    volume_m3, payload_t, carry_back_m3, scanned_at
             FROM measurements m WHERE device_id = $1 AND measurement_id = $2",
        )
        .bind(sent.device_id)
        .bind(sent.measurement_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let expected = json!({
            "device_id": sent.device_id,
            "measurement_id": sent.measurement_id,
            "workgroup_id": t.workgroup_id,
            "site_id": t.site_id,
            "truck_id": sent.truck.truck_id,
            "truck_name": sent.truck.name,
            "reference_scan_id": sent.truck.reference_scan_id,
            "load_details": sent.load_details.iter().map(|d| json!({"list": d.list, "code": d.code, "label": d.label})).collect::<Vec<_>>(),
            "quality_flags": sent.quality_flags,
            "has_profile": true,
        });
        assert_eq!(row, expected);
        assert_eq!((volume, payload, carry_back), (sent.volume_m3, sent.payload_t, sent.carry_back_m3));
        assert_eq!(scanned_at, sent.scanned_at);
        let (rows, cols, cell, heights): (i16, i16, i32, Vec<u8>) = sqlx::query_as(
            "SELECT rows, cols, cell_size_mm, heights FROM load_profiles WHERE device_id = $1 AND measurement_id = $2",
        )
        .bind(sent.device_id)
        .bind(sent.measurement_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let profile = sent.profile.as_ref().unwrap();
        assert_eq!((rows, cols, cell), (profile.rows as i16, profile.cols as i16, i32::from(profile.cell_size_mm)));
        assert_eq!(heights, profile.decode().unwrap(), "the profile is stored bit for bit");
    }
    // The ingestion sequence is strictly increasing and unique.
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM measurements ORDER BY seq").fetch_all(&app.db).await.unwrap();
    assert_eq!(seqs.len(), 80);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    lvs.stop().await;
    mps.stop().await;
}

#[tokio::test]
async fn the_same_measurement_twice_is_stored_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&app, &t.device_credential, &dir).await;
    let sent = batch(&mut factory(&t, t.device_id, false), 5);
    agent.record(&sent).unwrap();
    agent.record(&sent).unwrap(); // in the same consumer batch or the next: either way once
    assert!(agent.drained(WAIT).await);
    wait_stored(&app, t.device_id, 5).await;
    agent.record(&sent[..2]).unwrap(); // much later
    assert!(agent.drained(WAIT).await);
    wait_stored(&app, t.device_id, 5).await;
    agent.stop().await;
}

/// A raw AMQP publisher that authenticates as a device, to send what the agent never would.
async fn device_channel(app: &TestApp, device_id: Uuid, credential: &str) -> (Connection, lapin::Channel) {
    let user = format!("{}{device_id}", app.config.broker.device_user_prefix);
    let url = format!("amqp://{user}:{credential}@127.0.0.1:5672/{}", app.vhost());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.expect("device connects");
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (connection, channel)
}

async fn publish(channel: &lapin::Channel, user: &str, routing_key: &str, body: &[u8]) -> lapin::Result<()> {
    let properties = BasicProperties::default().with_user_id(ShortString::from(user.to_owned()));
    channel
        .basic_publish("measurements".into(), routing_key.into(), BasicPublishOptions::default(), body, properties)
        .await?
        .await?;
    Ok(())
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_and_recorded_while_good_ones_land() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Other").await;
    let user = format!("{}{}", app.config.broker.device_user_prefix, t.device_id);
    let key = myscanner_protocol::routing_key(t.device_id);
    let (_connection, channel) = device_channel(&app, t.device_id, &t.device_credential).await;
    let mut make = factory(&t, t.device_id, false);
    let good = |m: &MeasurementV1| serde_json::to_vec(m).unwrap();
    let variant = |m: &MeasurementV1, change: &dyn Fn(&mut Value)| {
        let mut v = serde_json::to_value(m).unwrap();
        change(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let first = make.next(Utc::now());
    let last = make.next(Utc::now());
    let m = make.next(Utc::now());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", b"{\"schema_version\": 1, \"measurement_id\": ".to_vec()),
        ("unknown schema version", variant(&m, &|v| v["schema_version"] = json!(7))),
        ("wrong identity", variant(&m, &|v| v["device_id"] = json!(other.device_id))),
        ("out of range", variant(&m, &|v| v["volume_m3"] = json!(-3.0))),
        ("profile size", variant(&m, &|v| v["profile"]["rows"] = json!(v["profile"]["rows"].as_u64().unwrap() + 1))),
        ("payload on an LVS", variant(&m, &|v| v["payload_t"] = json!(40.0))),
        ("missing field", variant(&m, &|v| drop(v.as_object_mut().unwrap().remove("truck")))),
        // PostgreSQL text cannot hold NUL: caught before the database, never retried for ever.
        ("control characters", variant(&m, &|v| v["truck"]["truck_id"] = json!("T\u{0}7"))),
        ("control characters in a key", br#"{"schema_version": 1, "bad\u0000key": 1}"#.to_vec()),
    ];
    publish(&channel, &user, &key, &good(&first)).await.unwrap();
    for (_, body) in &bad {
        publish(&channel, &user, &key, body).await.unwrap();
    }
    publish(&channel, &user, &key, &good(&last)).await.unwrap();

    wait_stored(&app, t.device_id, 2).await;
    assert_eq!(app.stored(other.device_id).await, 0, "nothing was stored as the other device");

    let rejections = expect_json(app.get("/api/v1/ingest-rejections", &operator).await, StatusCode::OK).await;
    let reasons: Vec<&str> =
        rejections["items"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), bad.len(), "{reasons:#?}");
    for (needle, _) in [
        ("malformed JSON", ()),
        ("unknown schema version 7", ()),
        ("wrong identity", ()),
        ("out of range: volume_m3", ()),
        ("need", ()),
        ("MPS devices only", ()),
        ("missing field `truck`", ()),
    ] {
        assert!(reasons.iter().any(|r| r.contains(needle)), "no rejection mentions {needle}: {reasons:#?}");
    }
    assert_eq!(rejections["items"][0]["broker_user"], user);
    expect_json(app.get("/api/v1/ingest-rejections", &t.admin_token).await, StatusCode::FORBIDDEN).await;

    // Each is in the dead-letter queue with its reason.
    eventually(WAIT, "dead letters", || async {
        broker::queue_depth(&app.vhost(), "measurements.dead").await == bad.len() as u64
    })
    .await;
    let url = format!("amqp://guest:guest@127.0.0.1:5672/{}", app.vhost());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let consumer_channel = connection.create_channel().await.unwrap();
    let mut dead = consumer_channel
        .basic_consume(
            "measurements.dead".into(),
            "test".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..bad.len() {
        let delivery = tokio::time::timeout(WAIT, dead.next()).await.unwrap().unwrap().unwrap();
        let headers = delivery.properties.headers().clone().unwrap();
        let reason = headers.inner().get("x-rejection-reason");
        assert!(matches!(reason, Some(AMQPValue::LongString(r)) if !r.to_string().is_empty()), "{headers:?}");
    }
}

#[tokio::test]
async fn the_broker_enforces_device_identity() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let other = app.tenant(&operator, "Other").await;
    let user = format!("{}{}", app.config.broker.device_user_prefix, t.device_id);
    let body = serde_json::to_vec(&factory(&t, t.device_id, false).next(Utc::now())).unwrap();

    // Another device's routing key: refused by the topic permission.
    let (_c1, channel) = device_channel(&app, t.device_id, &t.device_credential).await;
    assert!(publish(&channel, &user, &myscanner_protocol::routing_key(other.device_id), &body).await.is_err());
    // Another device's user_id: refused by RabbitMQ's user_id validation.
    let (_c2, channel) = device_channel(&app, t.device_id, &t.device_credential).await;
    let other_user = format!("{}{}", app.config.broker.device_user_prefix, other.device_id);
    assert!(publish(&channel, &other_user, &myscanner_protocol::routing_key(t.device_id), &body).await.is_err());
    // A wrong password: refused at connect.
    let url = format!("amqp://{user}:{}@127.0.0.1:5672/{}", other.device_credential, app.vhost());
    assert!(Connection::connect(&url, ConnectionProperties::default()).await.is_err());
    // Its own key, its own identity: accepted.
    let (_c3, channel) = device_channel(&app, t.device_id, &t.device_credential).await;
    publish(&channel, &user, &myscanner_protocol::routing_key(t.device_id), &body).await.unwrap();
    wait_stored(&app, t.device_id, 1).await;
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (connection, _channel) = device_channel(&app, t.device_id, &t.device_credential).await;
    let revoke = t.path(&format!("/devices/{}/credentials/revoke", t.device_id));
    assert_eq!(app.post(&revoke, &t.admin_token, json!({})).await.status(), StatusCode::NO_CONTENT);
    eventually(WAIT, "the open AMQP connection to close", || async { !connection.status().connected() }).await;
    let user = format!("{}{}", app.config.broker.device_user_prefix, t.device_id);
    let url = format!("amqp://{user}:{}@127.0.0.1:5672/{}", t.device_credential, app.vhost());
    assert!(Connection::connect(&url, ConnectionProperties::default()).await.is_err(), "no new connection either");
}

#[tokio::test]
async fn nothing_is_uploaded_while_measurement_transfer_is_off() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.agent_config(&t.device_credential, dir.path());
    config.settings.measurement_transfer = false;
    let agent = Agent::start(config).await.unwrap();
    assert!(!agent.record(&batch(&mut factory(&t, t.device_id, false), 3)).unwrap(), "not queued");
    let device =
        expect_json(app.get(&t.path(&format!("/devices/{}", t.device_id)), &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(device["settings"]["measurement_transfer"], false, "the device reported its setting");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.stored(t.device_id).await, 0);
    agent.stop().await;
}

#[tokio::test]
async fn agents_publish_over_amqps_to_the_brokers_tls_listener_exactly_once_and_trust_only_the_pinned_ca() {
    // RabbitMQ's own TLS listener (deploy/scripts/dev-tls.sh sets it up on 5671).
    let app = TestApp::spawn_with(|c| {
        c.broker.device_url = c.broker.device_url.replace("amqp://127.0.0.1:5672/", "amqps://127.0.0.1:5671/")
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = dir.path().join("ca.pem");
    let logs = myscanner_tests::logs::Logs::capture();

    // Pinned to another CA: the broker's certificate is refused, and the log says why.
    std::fs::write(&pinned, &myscanner_tests::tls::TestCa::new().pem).unwrap();
    let mut config = app.agent_config(&t.device_credential, &dir.path().join("outbox"));
    config.ca_file = Some(pinned.clone());
    let agent = Agent::start(config.clone()).await.unwrap();
    let mut sent = factory(&t, t.device_id, false);
    agent.record(&batch(&mut sent, 100)).unwrap();
    assert!(!agent.drained(Duration::from_secs(2)).await, "an untrusted broker gets nothing");
    agent.stop().await;
    assert_eq!(app.stored(t.device_id).await, 0);
    let refusals = logs.lines_with("publisher: broker connection lost");
    assert!(refusals.iter().any(|l| l.contains("not signed by a trusted CA")), "{refusals:?}");

    // Pinned to the broker's CA: everything waiting goes through, and what follows a killed
    // connection too, each measurement once.
    std::fs::write(&pinned, myscanner_tests::tls::broker_ca()).unwrap();
    let agent = Agent::start(config).await.unwrap();
    eventually(WAIT, "the first measurements", || async { app.stored(t.device_id).await > 0 }).await;
    let name = format!("agent {}", agent.identity.serial);
    eventually(WAIT, "the broker to list the TLS connection", || async {
        broker::kill_connections(&app.vhost(), &name).await > 0
    })
    .await;
    agent.record(&batch(&mut sent, 400)).unwrap();
    assert!(agent.drained(WAIT).await);
    wait_stored(&app, t.device_id, 500).await;
    agent.stop().await;
}
