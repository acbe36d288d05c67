//! What ingest survives with nothing lost and nothing stored twice: a killed consumer
//! connection, a deleted queue, a service restart, a database outage, a broker away across
//! an agent restart, and API traffic holding every connection it may.

use std::time::Duration;

use myscanner_agent::Agent;
use myscanner_tests::{TcpProxy, Tenant, TestApp, broker, eventually};

use super::{WAIT, batch, factory, start_agent, wait_stored};

/// Publishes `total` measurements from an agent in chunks, running `disrupt` halfway, and
/// checks that every one is stored exactly once.
async fn survives(app: &mut TestApp, t: &Tenant, total: usize, disrupt: impl AsyncFnOnce(&mut TestApp)) {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(app, &t.device_credential, &dir).await;
    let mut make = factory(t, t.device_id, false);
    let chunk = total / 10;
    let mut publish_chunks = async |agent: &Agent| {
        for _ in 0..5 {
            agent.record(&batch(&mut make, chunk)).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    publish_chunks(&agent).await;
    disrupt(app).await;
    publish_chunks(&agent).await;
    assert!(agent.drained(Duration::from_secs(60)).await, "the agent got every confirm");
    wait_stored(app, t.device_id, total as i64).await;
    agent.stop().await;
}

#[tokio::test]
async fn a_killed_consumer_connection_loses_nothing() {
    let mut app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    survives(&mut app, &t, 2000, async |app| {
        // The management API lists a connection once its statistics arrive (a few seconds).
        let vhost = app.vhost();
        eventually(WAIT, "the consumer's connection to be killed", || async {
            broker::kill_connections(&vhost, "myscanner-ingest").await == 1
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_queue_is_declared_again_and_consumed() {
    let mut app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    survives(&mut app, &t, 2000, async |app| {
        // Once what was sent so far is stored (what a deleted queue holds is gone), the
        // queue is deleted: the broker cancels the consumers, and the service reconnects
        // and declares it again while the agent re-sends what the broker returned.
        wait_stored(app, t.device_id, 1000).await;
        broker::delete_queue(&app.vhost(), myscanner::broker::INGEST_QUEUE).await;
    })
    .await;
}

#[tokio::test]
async fn a_service_restart_loses_nothing() {
    let mut app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    survives(&mut app, &t, 2000, async |app| app.restart().await).await;
}

#[tokio::test]
async fn a_database_outage_loses_nothing() {
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let port = proxy.addr.port();
    let mut app = TestApp::spawn_with(|c| {
        let url = c.database.url.expose().replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
        c.database.url = myscanner::config::Secret::new(url);
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    survives(&mut app, &t, 2000, async |_| {
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
    })
    .await;
}

#[tokio::test]
async fn the_outbox_keeps_measurements_across_an_agent_restart_while_the_broker_is_away() {
    let broker_proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let port = broker_proxy.addr.port();
    let app =
        TestApp::spawn_with(|c| c.broker.device_url = c.broker.device_url.replace(":5672/", &format!(":{port}/")))
            .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    broker_proxy.cut();

    let agent = start_agent(&app, &t.device_credential, &dir).await;
    let sent = batch(&mut factory(&t, t.device_id, false), 100);
    agent.record(&sent).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.pending(), 100, "nothing confirmed while the broker is unreachable");
    agent.stop().await;
    assert_eq!(app.stored(t.device_id).await, 0);

    // The scanner restarts; the network comes back.
    broker_proxy.restore();
    let agent = start_agent(&app, &t.device_credential, &dir).await;
    assert_eq!(agent.pending(), 100, "the outbox survived the restart");
    assert!(agent.drained(WAIT).await);
    wait_stored(&app, t.device_id, 100).await;
    agent.stop().await;
}

#[tokio::test]
async fn api_traffic_never_starves_ingest() {
    // Four API connections: the remote-control and sync listeners hold one each, and two
    // exports whose clients stopped reading hold the rest.
    let app = TestApp::spawn_with(|c| {
        c.database.max_connections = 4;
        c.server.stalled_stream_secs = 120;
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut seed = factory(&t, t.device_id, false);
    app.insert_measurements(&batch(&mut seed, 20_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&app, &t.device_credential, &dir).await;
    let export = t.path("/measurements/export");
    let mut stalled = vec![];
    for _ in 0..2 {
        stalled.push(app.stalled_get(&export, &t.api_token).await);
    }
    // Measurements still arrive: the consumer has connections of its own.
    agent.record(&batch(&mut factory(&t, t.device_id, false), 5)).unwrap();
    assert!(agent.drained(WAIT).await);
    wait_stored(&app, t.device_id, 20_005).await;
    agent.stop().await;
    drop(stalled);
}
