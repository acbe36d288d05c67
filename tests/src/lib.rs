//! Test and benchmark support for MyScanner Cloud: a real service on a real PostgreSQL.
//!
//! [`TestApp::spawn`] creates a database of its own (so tests run in parallel), runs the
//! migrations, serves the application on a free loopback port and offers typed helpers for
//! what tests keep doing: signing in, creating workgroups, provisioning devices.

pub mod bench;
pub mod contract;
pub mod logs;
pub mod tls;

use std::time::Duration;

use myscanner::config::{Config, Secret};
use myscanner::startup::Application;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where tests may create databases: a role with CREATEDB (set by `deploy/scripts/test.sh`).
pub fn admin_database_url() -> String {
    std::env::var("MYSCANNER_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://myscanner:myscanner@127.0.0.1:5432/postgres".to_owned())
}

/// A pool on `url`, connected the way the service connects (a local database without TLS
/// unless the URL asks for it).
pub async fn connect(url: &str) -> PgPool {
    PgPool::connect_with(myscanner::db::connect_options(url).expect("a PostgreSQL URL"))
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"))
}

/// A fresh, empty database named `myscanner_test_<random>`; returns its URL.
pub async fn create_database() -> String {
    let admin_url = admin_database_url();
    let admin = connect(&admin_url).await;
    let name = format!("myscanner_test_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL ends in /<database>");
    format!("{base}/{name}")
}

/// The configuration tests run with: a fresh database and broker vhost, port 0, device
/// broker users under a prefix of their own.
pub async fn test_config() -> Config {
    let mut config = Config::default();
    let id = Uuid::new_v4().simple().to_string();
    config.database.url = Secret::new(create_database().await);
    config.database.max_connections = 5;
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.auth.jwt_secret = Secret::new(format!("test-secret-{id}"));
    let vhost = format!("myscanner_test_{id}");
    broker::create_vhost(&vhost).await;
    config.broker.url = Secret::new(format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"));
    config.broker.device_url = format!("amqp://127.0.0.1:5672/{vhost}");
    config.broker.device_user_prefix = format!("test-{}-", &id[..8]);
    config
}

/// What tests do to RabbitMQ directly, through its management API (guest on loopback).
pub mod broker {
    use serde_json::{Value, json};

    const API: &str = "http://127.0.0.1:15672/api";

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn create_vhost(vhost: &str) {
        let put = |path: String, body: Value| {
            client().put(format!("{API}{path}")).basic_auth("guest", Some("guest")).json(&body).send()
        };
        let response = put(format!("/vhosts/{vhost}"), json!({})).await.expect("RabbitMQ management API (port 15672)");
        assert!(response.status().is_success(), "create vhost: {}", response.status());
        let response =
            put(format!("/permissions/{vhost}/guest"), json!({"configure": ".*", "write": ".*", "read": ".*"}))
                .await
                .unwrap();
        assert!(response.status().is_success());
    }

    /// Deletes the vhost (and everything in it) and the device users under `user_prefix`.
    pub async fn delete(vhost: &str, user_prefix: &str) {
        let api = |method: reqwest::Method, path: String| {
            client().request(method, format!("{API}{path}")).basic_auth("guest", Some("guest")).send()
        };
        let _ = api(reqwest::Method::DELETE, format!("/vhosts/{vhost}")).await;
        if let Ok(response) = api(reqwest::Method::GET, "/users?columns=name".into()).await {
            let users: Vec<Value> = response.json().await.unwrap_or_default();
            for name in users.iter().filter_map(|u| u["name"].as_str()).filter(|n| n.starts_with(user_prefix)) {
                let _ = api(reqwest::Method::DELETE, format!("/users/{name}")).await;
            }
        }
    }

    /// Closes every connection of the vhost whose client-given name is `name` (as the
    /// broker would on a network failure).
    pub async fn kill_connections(vhost: &str, name: &str) -> usize {
        let connections = get_json(&format!("/vhosts/{vhost}/connections")).await;
        let mut killed = 0;
        for connection in
            connections.as_array().into_iter().flatten().filter(|c| c["client_properties"]["connection_name"] == name)
        {
            let id = myscanner::broker::management::encode(connection["name"].as_str().unwrap());
            client().delete(format!("{API}/connections/{id}")).basic_auth("guest", Some("guest")).send().await.unwrap();
            killed += 1;
        }
        killed
    }

    /// Deletes a queue of the vhost, as an operator might by mistake.
    pub async fn delete_queue(vhost: &str, queue: &str) {
        let path = format!("{API}/queues/{vhost}/{}", myscanner::broker::management::encode(queue));
        let response = client().delete(path).basic_auth("guest", Some("guest")).send().await.unwrap();
        assert!(response.status().is_success(), "delete queue: {}", response.status());
    }

    /// Messages waiting in a queue of the vhost.
    pub async fn queue_depth(vhost: &str, queue: &str) -> u64 {
        let info = get_json(&format!("/queues/{vhost}/{}", myscanner::broker::management::encode(queue))).await;
        info["messages"].as_u64().unwrap_or(0)
    }

    async fn get_json(path: &str) -> Value {
        let response = client().get(format!("{API}{path}")).basic_auth("guest", Some("guest")).send().await.unwrap();
        response.json().await.unwrap()
    }
}

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

/// Removes what [`test_config`] made when dropped (see [`remove_test_resources`]).
pub struct Cleanup(pub Config);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_test_resources(&self.0);
    }
}

/// Drops what [`test_config`] made for a test or benchmark: its broker vhost, device users
/// and database. Blocks, on a thread of its own: the caller's runtime may be shutting down.
pub fn remove_test_resources(config: &Config) {
    let vhost = config.broker.url.expose().rsplit('/').next().unwrap().to_owned();
    let prefix = config.broker.device_user_prefix.clone();
    let database = config.database.url.expose().rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            broker::delete(&vhost, &prefix).await;
            if let Ok(admin) =
                PgPool::connect_with(myscanner::db::connect_options(&admin_database_url()).unwrap()).await
            {
                let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
            }
        });
    })
    .join();
}

/// Another instance of the service on a [`TestApp`]'s database; stopped on drop.
pub struct Replica {
    pub base_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Replica {
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("replica task").expect("replica stopped cleanly");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A workgroup set up through the API, with one site, one device and an admin.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub workgroup_id: Uuid,
    pub site_id: Uuid,
    pub device_id: Uuid,
    /// The device's bearer credential.
    pub device_credential: String,
    /// A member with every permission, signed in.
    pub admin_token: String,
    pub admin_id: Uuid,
    /// A read-only API token of the workgroup.
    pub api_token: String,
    pub api_token_id: Uuid,
}

pub const PASSWORD: &str = "correct horse battery staple";

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
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.ingest.enabled = false;
        config.security.scheduler = false;
        config.security.workers = 0;
        let application =
            Application::build_with_clock(config.clone(), self.clock.clone()).await.expect("build the replica");
        let base_url = base_url(&config, application.local_addr());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move { application.run_until(stop.cancelled_owned()).await });
        Replica { base_url, shutdown, server: Some(server) }
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

    /// The configuration of an agent for a provisioned device, with an outbox in `dir`.
    pub fn agent_config(&self, credential: &str, dir: &std::path::Path) -> myscanner_agent::config::DeviceConfig {
        myscanner_agent::config::DeviceConfig {
            credential: credential.to_owned(),
            api_url: self.base_url.clone(),
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

    /// A platform operator, signed in.
    pub async fn operator(&self) -> String {
        self.operator_named(&format!("operator-{}@example.com", Uuid::new_v4().simple()), "Operator").await
    }

    /// A platform operator with this e-mail and name (password [`PASSWORD`]), signed in.
    pub async fn operator_named(&self, email: &str, name: &str) -> String {
        myscanner::admin::create_operator(
            &self.db,
            email,
            name,
            Some(PASSWORD.into()),
            myscanner::admin::Existing::Refuse,
        )
        .await
        .unwrap();
        self.login(email, PASSWORD).await
    }

    /// Adds a new person to a workgroup with `permissions` and returns their id and token.
    pub async fn member(&self, manager_token: &str, workgroup_id: Uuid, permissions: &[&str]) -> (Uuid, String) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .post(
                &format!("/api/v1/workgroups/{workgroup_id}/members"),
                manager_token,
                json!({"email": email, "name": "Test User", "password": PASSWORD, "permissions": permissions}),
            )
            .await;
        let member = expect_json(response, StatusCode::CREATED).await;
        (uuid(&member["user_id"]), self.login(&email, PASSWORD).await)
    }

    /// Provisions a device into a site (as an operator) and returns its id and credential.
    pub async fn provision(&self, operator: &str, workgroup_id: Uuid, site_id: Uuid, kind: &str) -> (Uuid, String) {
        let serial = format!("T-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let response = self
            .post(
                &format!("/api/v1/workgroups/{workgroup_id}/devices"),
                operator,
                json!({"site_id": site_id, "kind": kind, "serial": serial, "name": "Test scanner"}),
            )
            .await;
        let provisioned = expect_json(response, StatusCode::CREATED).await;
        (uuid(&provisioned["device"]["id"]), provisioned["credential"]["secret"].as_str().unwrap().to_owned())
    }

    /// Gives the workgroup (as an operator) a subscription for `scanners` scanners, from
    /// now for a year by the service's clock; returns it.
    pub async fn subscribe(&self, operator: &str, workgroup_id: Uuid, scanners: i32) -> Value {
        let body = json!({
            "plan": "Fleet",
            "scanners": scanners,
            "period_start": self.clock.now(),
            "period_end": self.clock.now() + chrono::Duration::days(365),
        });
        let response = self.put(&format!("/api/v1/workgroups/{workgroup_id}/subscription"), operator, body).await;
        assert!(response.status().is_success(), "subscribe: {}", response.status());
        response.json().await.unwrap()
    }

    /// A complete workgroup, set up through the API the way an operator and its admin would,
    /// with a year's subscription for ten scanners.
    pub async fn tenant(&self, operator: &str, name: &str) -> Tenant {
        let workgroup =
            expect_json(self.post("/api/v1/workgroups", operator, json!({"name": name})).await, StatusCode::CREATED)
                .await;
        let workgroup_id = uuid(&workgroup["id"]);
        self.subscribe(operator, workgroup_id, 10).await;
        let (admin_id, admin_token) =
            self.member(operator, workgroup_id, &["view_data", "control_devices", "manage_workgroup"]).await;
        let site = expect_json(
            self.post(
                &format!("/api/v1/workgroups/{workgroup_id}/sites"),
                &admin_token,
                json!({"name": format!("{name} site"), "time_zone": "Europe/London"}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        let site_id = uuid(&site["id"]);
        let (device_id, device_credential) = self.provision(operator, workgroup_id, site_id, "lvs").await;
        let token = expect_json(
            self.post(&format!("/api/v1/workgroups/{workgroup_id}/api-tokens"), &admin_token, json!({"name": "ERP"}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        Tenant {
            workgroup_id,
            site_id,
            device_id,
            device_credential,
            admin_token,
            admin_id,
            api_token: token["secret"].as_str().unwrap().to_owned(),
            api_token_id: uuid(&token["id"]),
        }
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

/// A TCP proxy on loopback the test controls: `cut` drops every connection through it and
/// refuses new ones until `restore` — a database or broker outage on demand; `freeze` holds
/// every connection open but passes no byte until `thaw` — a process stopped (SIGSTOP).
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    frozen: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` to `to`, holding each read back while the proxy is frozen.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if frozen.wait_for(|frozen| !frozen).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (frozen, _) = tokio::sync::watch::channel(false);
        let (accept_up, accept_generation, accept_frozen) = (up.clone(), generation.clone(), frozen.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let mut cut = accept_generation.subscribe();
                let frozen = accept_frozen.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let ((in_rx, in_tx), (out_rx, out_tx)) = (inbound.into_split(), outbound.into_split());
                    tokio::select! {
                        _ = async { tokio::join!(pump(in_rx, out_tx, frozen.clone()), pump(out_rx, in_tx, frozen)) } => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpProxy { addr, up, generation, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn uuid(value: &Value) -> Uuid {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a UUID: {value}"))
}

/// Asserts the status and returns the JSON body, which must be what the published OpenAPI
/// document says this path answers with this status ([`contract::check`]).
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let path = response.url().path().to_owned();
    let json =
        response.headers().get("content-type").is_some_and(|ct| ct.to_str().unwrap_or_default().contains("json"));
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {body}");
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if json {
        contract::check(&path, status.as_u16(), &value);
    }
    value
}

/// Asserts a problem+json answer with this status and problem code; returns the problem.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let problem = expect_json(response, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{problem}");
    assert_eq!(problem["type"], format!("urn:myscanner:problem:{code}"), "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    problem
}

/// Remote control from the user's side, and what sits behind a scanner.
pub mod remote {
    use std::net::SocketAddr;

    use futures_util::{SinkExt, StreamExt};
    use myscanner_protocol::tunnel::{self, ConnectError};
    use reqwest::StatusCode;
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;
    use uuid::Uuid;

    pub type Session = tunnel::ClientSocket;

    /// A TCP echo server on loopback: the scanner's "VNC" in tests.
    pub async fn echo_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut rx, mut tx) = socket.split();
                    let _ = tokio::io::copy(&mut rx, &mut tx).await;
                });
            }
        });
        addr
    }

    pub fn session_url(base_url: &str, workgroup_id: Uuid, device_id: Uuid) -> String {
        tunnel::websocket_url(base_url, &format!("/api/v1/workgroups/{workgroup_id}/devices/{device_id}/remote"))
    }

    /// Opens a session; a refusal comes back as its status and problem document.
    pub async fn open(
        url: &str,
        token: &str,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Session, (StatusCode, Value)> {
        match tunnel::connect(url, token, tls).await {
            Ok(ws) => Ok(ws),
            Err(ConnectError::Refused { status, body }) => {
                Err((StatusCode::from_u16(status).unwrap(), serde_json::from_slice(&body).unwrap_or_default()))
            }
            Err(error) => panic!("session to {url}: {error}"),
        }
    }

    /// Sends `payload` through the session in binary messages while reading the echo back;
    /// returns what came back.
    pub async fn echo(session: &mut Session, payload: &[u8]) -> Vec<u8> {
        let (mut tx, mut rx) = session.split();
        let send = async {
            for chunk in payload.chunks(64 * 1024) {
                tx.send(Message::Binary(chunk.to_vec().into())).await.unwrap();
            }
        };
        let receive = async {
            let mut back = Vec::with_capacity(payload.len());
            while back.len() < payload.len() {
                match rx.next().await {
                    Some(Ok(Message::Binary(data))) => back.extend_from_slice(&data),
                    Some(Ok(Message::Close(frame))) => panic!("session closed mid-transfer: {frame:?}"),
                    Some(Ok(_)) => {}
                    other => panic!("session failed mid-transfer: {other:?}"),
                }
            }
            back
        };
        let ((), back) = tokio::join!(send, receive);
        back
    }

    /// A VNC client's first bytes through `myscanner remote`'s port forwarder (to `target`),
    /// and their echo back.
    pub async fn through_forwarder(target: myscanner::remote::forward::Target) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forwarded = listener.local_addr().unwrap();
        let forwarder = tokio::spawn(myscanner::remote::forward::serve(listener, target));
        let mut vnc = tokio::net::TcpStream::connect(forwarded).await.unwrap();
        vnc.write_all(b"RFB 003.008\n").await.unwrap();
        let mut back = [0u8; 12];
        vnc.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"RFB 003.008\n");
        drop(vnc);
        forwarder.abort();
    }

    /// Waits for the session's close frame and returns its reason.
    pub async fn close_reason(session: &mut Session) -> String {
        loop {
            match session.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                Some(Ok(_)) => {}
                other => panic!("the session ended without a close frame: {other:?}"),
            }
        }
    }
}
