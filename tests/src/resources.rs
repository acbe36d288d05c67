//! What each test or benchmark gets of its own on the shared PostgreSQL and RabbitMQ (a
//! database, a broker vhost, device users under a prefix), so tests run in parallel, and
//! its removal afterwards.

use myscanner::config::{Config, Secret};
use sqlx::PgPool;
use uuid::Uuid;

use crate::broker;

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
    // Tests run side by side: each its own metrics port (the default is one per machine).
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.auth.jwt_secret = Secret::new(format!("test-secret-{id}"));
    let vhost = format!("myscanner_test_{id}");
    broker::create_vhost(&vhost).await;
    config.broker.url = Secret::new(format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"));
    config.broker.device_url = format!("amqp://127.0.0.1:5672/{vhost}");
    config.broker.device_user_prefix = format!("test-{}-", &id[..8]);
    config
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
