//! Test and benchmark support for MyScanner Cloud: a real service on a real PostgreSQL.
//!
//! [`TestApp::spawn`] creates a database of its own (so tests run in parallel), runs the
//! migrations, serves the application on a free loopback port and offers typed helpers for
//! what tests keep doing: signing in, creating workgroups, provisioning devices.
//!
//! What is where:
//! - this file: [`TestApp`] — the service under test, its lifecycle (restart, replicas) and
//!   the requests tests send it;
//! - `tenant`: what tests set up through the API first (operators, members, devices,
//!   subscriptions, a whole [`Tenant`]);
//! - `expect`: assertions on answers, each body held to the OpenAPI document (`contract`);
//! - `resources`: each test's own database and broker vhost, and their removal;
//! - `broker`, `proxy`, `remote`, `tls`, `logs`: RabbitMQ's management API, a TCP proxy for
//!   staged outages, remote-control sessions, test certificates, captured logs;
//! - `bench`: what the benchmark binary (`src/bin/bench`) shares.

pub mod balancer;
pub mod bench;
pub mod broker;
pub mod contract;
mod expect;
pub mod logs;
mod proxy;
pub mod remote;
mod resources;
mod tenant;
pub mod tls;

use std::time::Duration;

use myscanner::config::Config;
use myscanner::startup::Application;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use expect::{expect_json, expect_problem, uuid};
pub use proxy::TcpProxy;
pub use resources::{Cleanup, admin_database_url, connect, create_database, remove_test_resources, test_config};
pub use tenant::{PASSWORD, Tenant};

/// The service under test, in this process, on a database and broker vhost of its own; they
/// are removed when it is dropped.
pub struct TestApp {
    /// Stays the same across [`TestApp::restart`]; `https://` when the service serves TLS.
    pub base_url: String,
    pub db: PgPool,
    pub config: Config,
    /// Trusts the test's CA when the service serves TLS.
    pub client: reqwest::Client,
    /// What the service (and its replicas) judge subscriptions and the weekly schedule by.
    pub clock: myscanner::clock::Clock,
    /// What clients of this service trust: the test's CA, or the platform's roots.
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    /// Stops the service, then drops the test's broker vhost, device users and database
    /// (on a thread of its own: the test's runtime may be shutting down).
    fn drop(&mut self) {
        self.shutdown.cancel();
        remove_test_resources(&self.config);
    }
}

/// Another instance of the service on a [`TestApp`]'s database, in a tokio runtime of its
/// own: it can stop gracefully, or die as a crashed process does — [`Replica::kill`] drops
/// every task, connection and listener it holds at once, telling nobody. Killed on drop.
pub struct Replica {
    pub base_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    /// Stops it as SIGTERM would, and waits until it has (a killed one is stopped already).
    pub async fn stop(&mut self) {
        if self.runtime.is_none() {
            return;
        }
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("replica task").expect("replica stopped cleanly");
        }
        self.kill();
    }

    /// Ends it at once, as a crash or a SIGKILL would: no graceful shutdown, no goodbyes.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with the test configuration changed by `adjust` first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_trusting(myscanner_protocol::tls::platform_client_config(), adjust).await
    }

    /// Spawns serving HTTPS with `certificate` (files written to `dir`), its clients
    /// trusting `ca`; `adjust` changes the configuration further.
    pub async fn spawn_tls(
        ca: &tls::TestCa,
        certificate: &tls::Issued,
        dir: &std::path::Path,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let (cert_file, key_file) = certificate.write(dir, "service");
        Self::spawn_trusting(ca.client_config(), |config| {
            config.server.tls = Some(myscanner::config::TlsConfig { cert_file, key_file, reload_secs: 1 });
            adjust(config);
        })
        .await
    }

    async fn spawn_trusting(tls: std::sync::Arc<rustls::ClientConfig>, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config().await;
        adjust(&mut config);
        // RUST_LOG=myscanner=debug shows the service's logs in a test's output.
        if std::env::var_os("RUST_LOG").is_some() {
            myscanner::telemetry::init(&config.log);
        }
        let db = connect(config.database.url.expose()).await;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut app = TestApp {
            base_url: String::new(),
            db,
            config,
            client,
            clock: Default::default(),
            tls,
            shutdown: CancellationToken::new(),
            server: None,
        };
        app.start().await;
        app
    }

    /// Starts the service (again, after [`TestApp::stop`]) on the same port and database.
    pub async fn start(&mut self) {
        let application = Application::build_with_clock(self.config.clone(), self.clock.clone())
            .await
            .expect("build the application");
        self.base_url = base_url(&self.config, application.local_addr());
        // A restart comes back on the same port, as a real one would: agents reconnect there.
        self.config.server.listen = application.local_addr();
        self.shutdown = CancellationToken::new();
        let stop = self.shutdown.clone();
        self.server = Some(tokio::spawn(async move { application.run_until(stop.cancelled_owned()).await }));
        self.wait_until_ready().await;
    }

    /// Stops the service gracefully (as SIGTERM would) and waits until it has.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// Stops the service and starts it again on the same database and broker vhost.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    /// A second replica of the service on the same database (no consumer, scheduler or
    /// workers of its own): for what crosses replicas.
    pub async fn spawn_replica(&self) -> Replica {
        self.spawn_replica_with(|_| {}).await
    }

    /// A replica whose configuration (that of [`TestApp::spawn_replica`]) `adjust` changes
    /// first: its roles, say.
    pub async fn spawn_replica_with(&self, adjust: impl FnOnce(&mut Config)) -> Replica {
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.ingest.enabled = false;
        config.security.scheduler = false;
        config.security.workers = 0;
        adjust(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("replica")
            .enable_all()
            .build()
            .expect("a runtime for the replica");
        let clock = self.clock.clone();
        let application = runtime
            .spawn(async move { Application::build_with_clock(config, clock).await })
            .await
            .expect("replica start-up task")
            .expect("build the replica");
        let base_url = base_url(&self.config, application.local_addr());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = runtime.spawn(async move { application.run_until(stop.cancelled_owned()).await });
        Replica { base_url, shutdown, server: Some(server), runtime: Some(runtime) }
    }

    /// Polls `/readyz` (database and, with ingest on, the consumer's broker connection).
    pub async fn wait_until_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self.client.get(self.url("/readyz")).send().await.is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the service did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The test's broker vhost.
    pub fn vhost(&self) -> String {
        self.config.broker.url.expose().rsplit('/').next().unwrap().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, bearer: Option<&str>) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Response {
        self.request(Method::GET, path, Some(bearer)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> Response {
        self.send_json(Method::POST, path, bearer, body).await
    }

    pub async fn put(&self, path: &str, bearer: &str, body: Value) -> Response {
        self.send_json(Method::PUT, path, bearer, body).await
    }

    pub async fn patch(&self, path: &str, bearer: &str, body: Value) -> Response {
        self.send_json(Method::PATCH, path, bearer, body).await
    }

    /// Sends `body`; when the service takes it, the document must allow it too
    /// ([`contract::check_request`]).
    async fn send_json(&self, method: Method, path: &str, bearer: &str, body: Value) -> Response {
        let response = self.request(method.clone(), path, Some(bearer)).json(&body).send().await.unwrap();
        if response.status().is_success() && !body.is_null() {
            contract::check_request(method.as_str(), path.split('?').next().unwrap_or(path), &body);
        }
        response
    }

    pub async fn delete(&self, path: &str, bearer: &str) -> Response {
        self.request(Method::DELETE, path, Some(bearer)).send().await.unwrap()
    }

    pub async fn login_response(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// A client that sends `GET path`, reads the status line (asserting 200) and then
    /// nothing more, through a small receive window: a reader that stopped reading.
    pub async fn stalled_get(&self, path: &str, bearer: &str) -> tokio::net::TcpStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let address = self.base_url.trim_start_matches("http://").parse().unwrap();
        let mut stalled = socket.connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {bearer}\r\n\r\n");
        stalled.write_all(request.as_bytes()).await.unwrap();
        let mut head = vec![0; 512];
        let read = stalled.read(&mut head).await.unwrap();
        assert!(head[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..read]));
        stalled
    }

    /// Signs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self.login_response(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// Who `bearer` signs in as (`GET /api/v1/me`, which must answer 200).
    pub async fn me(&self, bearer: &str) -> Value {
        expect_json(self.get("/api/v1/me", bearer).await, StatusCode::OK).await
    }

    /// `PUT /api/v1/me/password` as the holder of `bearer`.
    pub async fn change_password(&self, bearer: &str, current: &str, new: &str) -> Response {
        self.put("/api/v1/me/password", bearer, json!({"current_password": current, "new_password": new})).await
    }

    /// The configuration of an agent for a provisioned device, with an outbox in `dir`.
    pub fn agent_config(&self, credential: &str, dir: &std::path::Path) -> myscanner_agent::config::DeviceConfig {
        agent_config(&self.base_url, credential, dir)
    }

    /// Stores measurements the way the ingest consumer does (same validation and batch
    /// insert), without going through the broker: for tests of what reads them.
    pub async fn insert_measurements(&self, measurements: &[myscanner_protocol::MeasurementV1]) {
        use myscanner::measurements::{store, validate};
        let mut ids: Vec<Uuid> = measurements.iter().map(|m| m.device_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let devices = store::known_devices(&self.db, &ids).await.unwrap();
        let rows: Vec<validate::Row> = measurements
            .iter()
            .map(|m| {
                validate::check(m.clone()).and_then(|p| validate::to_row(p, &devices)).expect("a valid measurement")
            })
            .collect();
        for chunk in rows.chunks(500) {
            store::write(&self.db, chunk, &[]).await.unwrap();
        }
    }

    /// Measurements stored for a device.
    pub async fn stored(&self, device_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM measurements WHERE device_id = $1")
            .bind(device_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

/// The configuration of an agent for the device with `credential`, reaching the service at
/// `api_url`, with an outbox in `dir`: every setting off, nothing pinned, nothing scanned.
pub fn agent_config(api_url: &str, credential: &str, dir: &std::path::Path) -> myscanner_agent::config::DeviceConfig {
    myscanner_agent::config::DeviceConfig {
        credential: credential.to_owned(),
        api_url: api_url.to_owned(),
        outbox_dir: Some(dir.to_path_buf()),
        ca_file: None,
        allow_insecure: false,
        settings: myscanner_agent::api::Settings::default(),
        internal_scan_allowed: vec![],
        remote_control_target: myscanner_agent::tunnel::DEFAULT_TARGET.parse().unwrap(),
        sync_dir: None,
        serial: None,
        device_id: None,
        cloud_recheck_secs: 600,
    }
}

/// Where a service with `config` listening on `address` is reached.
fn base_url(config: &Config, address: std::net::SocketAddr) -> String {
    let scheme = if config.server.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{address}")
}

/// Waits until a change made behind the service's back (straight in the database, or on
/// another replica) is seen everywhere: replicas believe what they remember of callers for
/// at most `auth::cache::FRESH`.
pub async fn past_remembered_callers() {
    tokio::time::sleep(myscanner::auth::cache::FRESH + Duration::from_millis(50)).await;
}

/// Polls `condition` every 20 ms until it holds, for at most `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
