//! Typed, layered configuration: built-in defaults that work on a developer machine, then an
//! optional TOML file (`--config`), then `MYSCANNER_*` environment variables, where `__`
//! separates sections (`MYSCANNER_DATABASE__URL`, `MYSCANNER_AUTH__JWT_SECRET`).
//!
//! One file on purpose: it is the one list of settings, and a setting's meaning, its
//! default and its check are read side by side; its length is mostly their documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The JWT signing secret used when none is configured. Production refuses it.
pub const DEV_JWT_SECRET: &str = "development-only-jwt-secret-do-not-deploy";
/// RabbitMQ's out-of-the-box account, reachable from loopback only. Production refuses it.
pub const DEV_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The database password of the development set-up in `deploy/`. Production refuses it.
pub const DEV_DATABASE_URL: &str = "postgres://myscanner:myscanner@127.0.0.1:5432/myscanner";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub environment: Environment,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub broker: BrokerConfig,
    pub ingest: IngestConfig,
    pub security: SecurityConfig,
    pub remote: RemoteConfig,
    pub subscriptions: SubscriptionsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A request that takes longer is answered 503 and its work dropped.
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// Origins of the web dashboard allowed to call the API from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed. Anyone else's is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Steady request rate allowed per signed-in user and per API token (per replica).
    pub rate_limit_per_minute: u32,
    /// Requests a user or token may make at once before the steady rate applies.
    pub rate_limit_burst: u32,
    /// The same for each scanner (device credential).
    pub device_rate_limit_per_minute: u32,
    pub device_rate_limit_burst: u32,
    /// Measurement exports streaming at once from this replica; more are answered 429.
    pub max_exports: usize,
    /// How long a streamed response (an export) waits for its client to take the next
    /// chunk before it gives up and frees what it holds.
    pub stalled_stream_secs: u64,
    /// The built web dashboard (`web/dist`, made by `npm run build` in `web/`), served at
    /// `/`. Without it the service runs and says at `/` how to build it.
    pub web_dir: PathBuf,
    /// Serve HTTPS (and WSS) on `listen` with this certificate. Without it the service
    /// speaks plain HTTP: for loopback, or behind a TLS-terminating proxy.
    pub tls: Option<TlsConfig>,
}

/// The service's own TLS certificate (PEM files), re-read when the files change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for a renewed certificate.
    #[serde(default = "TlsConfig::default_reload_secs")]
    pub reload_secs: u64,
}

impl TlsConfig {
    fn default_reload_secs() -> u64 {
        10
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May hold a password, hence secret.
    pub url: Secret,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 key of the dashboard's session tokens; at least 32 bytes in production.
    pub jwt_secret: Secret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_ttl_secs: u64,
    pub login_throttle: LoginThrottleConfig,
    /// Password hashes computed or verified at once (argon2: ~19 MiB and a core each).
    pub password_checks_at_once: usize,
    /// How long a sign-in waits for a turn before it is answered 429.
    pub password_check_wait_ms: u64,
}

/// Failed sign-ins allowed per account and per client address within a window; past them
/// the key is locked until the window ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginThrottleConfig {
    pub max_failures_per_account: i32,
    pub max_failures_per_address: i32,
    pub window_secs: u64,
}

/// RabbitMQ: where the service consumes measurements, how it manages device users, and
/// what devices are told to connect to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// The service's own AMQP connection, vhost included (`/%2f` is the default vhost).
    pub url: Secret,
    /// RabbitMQ's management API, used to create, rotate and delete device users.
    pub management_url: String,
    pub management_username: String,
    pub management_password: Secret,
    /// The AMQP URL devices are given (without credentials): usually `amqps://` on 5671 or
    /// behind a TLS terminator on 5672.
    pub device_url: String,
    /// Device broker users are named `<prefix><device id>`.
    pub device_user_prefix: String,
}

/// The ingest consumer's batching. Memory is bounded by `prefetch` messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Run the ingest consumer in this process (switch off for API-only replicas).
    pub enabled: bool,
    /// Unacked messages the consumer holds at most, over all its channels.
    pub prefetch: u16,
    /// Consumers (one channel each) the queue delivers to. The broker serialises a
    /// channel's deliveries in one process, which publishers' traffic can starve: two
    /// take a backlog more than twice as fast while devices keep publishing.
    pub channels: u16,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    /// Messages larger than this are rejected unread.
    pub max_message_bytes: usize,
}

/// Security Services: the weekly schedule, the scan workers and what they may scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Run the Saturday scheduler in this process (idempotent across replicas).
    pub scheduler: bool,
    /// External scans this process runs at once (0: none); one claim fills every free slot.
    pub workers: usize,
    /// A worker renews its lease every third of this; a job whose lease expires is rescued.
    pub lease_secs: u64,
    /// Delay before the first retry; it doubles with each attempt.
    pub retry_backoff_secs: u64,
    /// An internal scan its device has not claimed in this long fails that attempt.
    pub internal_claim_timeout_secs: u64,
    pub poll_interval_ms: u64,
    /// The only addresses external scans may contact. Production lists the public ranges
    /// its devices sit in; development and tests allow loopback only.
    pub allowed_targets: Vec<IpNet>,
    /// Ports of an external scan, e.g. `1-65535` or `1-1024,3389`.
    pub external_ports: String,
    pub max_in_flight: usize,
    /// Connection attempts per second to one target.
    pub rate_per_sec: u32,
    pub initial_timeout_ms: u64,
    pub min_timeout_ms: u64,
    pub max_timeout_ms: u64,
}

impl SecurityConfig {
    pub fn scan_settings(&self) -> crate::security::external::ScanSettings {
        crate::security::external::ScanSettings {
            ports: crate::security::external::parse_ports(&self.external_ports).expect("validated at load"),
            max_in_flight: self.max_in_flight.max(1),
            rate_per_sec: self.rate_per_sec,
            initial_timeout: std::time::Duration::from_millis(self.initial_timeout_ms),
            min_timeout: std::time::Duration::from_millis(self.min_timeout_ms),
            max_timeout: std::time::Duration::from_millis(self.max_timeout_ms),
        }
    }
}

/// Remote control: the tunnels scanners hold and the sessions users open over them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Where other replicas reach this one to route sessions to the tunnels it holds.
    /// Default: `http://` and the address this process listens on.
    pub advertise_url: Option<String>,
    /// A session with no bytes either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// How often a replica refreshes its tunnels and sessions in the registry; one silent
    /// for three of these counts as gone, and its tunnels as offline.
    pub heartbeat_secs: u64,
}

/// Subscriptions: what customers are told, and the default grace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// Whom customers contact to subscribe or renew: shown in the dashboard's banner and in
    /// `subscription-inactive` problems.
    pub contact: String,
    /// Days cloud features keep working after a period ends, for subscriptions created
    /// without a `grace_days` of their own.
    pub grace_days: i32,
}

/// Prometheus metrics of this replica (`GET /metrics`, the Prometheus text format), served
/// on a listener of their own so that they never reach the public API's port: plain HTTP,
/// no authentication, so keep it on loopback or a private network that only Prometheus
/// reaches. Each replica has its own (ingest, API, tunnels and pools are per replica).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the metrics listener at all.
    pub enabled: bool,
    /// Where `/metrics` is served: `127.0.0.1:9464` by default (the customary port of an
    /// OpenTelemetry Prometheus exporter), reachable from this machine only; `0.0.0.0:9464`
    /// for a Prometheus on another machine. Never `server.listen`'s port. Port 0 picks a
    /// free one. A port already taken stops the service from starting, as `server.listen` does.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter such as `info,myscanner=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::Development,
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                request_timeout_secs: 30,
                body_limit_bytes: 1024 * 1024,
                cors_allowed_origins: vec!["http://localhost:3000".into()],
                trusted_proxies: vec![],
                rate_limit_per_minute: 600,
                rate_limit_burst: 120,
                device_rate_limit_per_minute: 600,
                device_rate_limit_burst: 120,
                max_exports: 4,
                stalled_stream_secs: 30,
                web_dir: PathBuf::from("web/dist"),
                tls: None,
            },
            database: DatabaseConfig { url: Secret::new(DEV_DATABASE_URL), max_connections: 20 },
            auth: AuthConfig {
                jwt_secret: Secret::new(DEV_JWT_SECRET),
                jwt_issuer: "myscanner".into(),
                jwt_audience: "myscanner-api".into(),
                jwt_ttl_secs: 15 * 60,
                login_throttle: LoginThrottleConfig {
                    max_failures_per_account: 5,
                    max_failures_per_address: 50,
                    window_secs: 15 * 60,
                },
                password_checks_at_once: 4,
                password_check_wait_ms: 2000,
            },
            broker: BrokerConfig {
                url: Secret::new(DEV_BROKER_URL),
                management_url: "http://127.0.0.1:15672".into(),
                management_username: "guest".into(),
                management_password: Secret::new("guest"),
                device_url: "amqp://127.0.0.1:5672/%2f".into(),
                device_user_prefix: "device-".into(),
            },
            ingest: IngestConfig {
                enabled: true,
                prefetch: 2000,
                channels: 2,
                batch_size: 500,
                batch_timeout_ms: 20,
                max_message_bytes: 1024 * 1024,
            },
            security: SecurityConfig {
                scheduler: true,
                workers: 2,
                lease_secs: 30,
                retry_backoff_secs: 300,
                internal_claim_timeout_secs: 3600,
                poll_interval_ms: 1000,
                allowed_targets: vec!["127.0.0.0/8".parse().expect("a network"), "::1/128".parse().expect("a network")],
                external_ports: "1-65535".into(),
                max_in_flight: 1024,
                rate_per_sec: 50_000,
                initial_timeout_ms: 1000,
                min_timeout_ms: 20,
                max_timeout_ms: 3000,
            },
            remote: RemoteConfig { advertise_url: None, idle_timeout_secs: 15 * 60, heartbeat_secs: 10 },
            subscriptions: SubscriptionsConfig { contact: "your MyScanner vendor".into(), grace_days: 14 },
            metrics: MetricsConfig { enabled: true, listen: SocketAddr::from(([127, 0, 0, 1], 9464)) },
            log: LogConfig { format: LogFormat::Text, filter: "info,sqlx=warn".into() },
        }
    }
}

impl Config {
    /// Defaults, then the file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Settings live in sections (`MYSCANNER_SECTION__KEY`) apart from `environment`; other
        // MYSCANNER_* variables (MYSCANNER_CONFIG, the bootstrap passwords, test settings) are
        // not settings. A misspelt key inside a section is still an error.
        let env =
            Env::prefixed("MYSCANNER_").filter(|key| key.as_str().contains("__") || key == "environment").split("__");
        let config: Config = figment.merge(env).extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses settings that would be unsafe, above all development secrets in production.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.environment == Environment::Production {
            let secret = self.auth.jwt_secret.expose();
            if secret == DEV_JWT_SECRET || secret.len() < 32 {
                bail!("production needs auth.jwt_secret: at least 32 random bytes, not the development secret");
            }
            if self.database.url.expose() == DEV_DATABASE_URL {
                bail!("production needs its own database.url, not the development one");
            }
            if !crate::db::verifies_its_peer(self.database.url.expose())? {
                bail!(
                    "production needs database.url with sslmode=verify-full (or verify-ca) for a database on \
                     another machine: the link must be encrypted and the server verified"
                );
            }
            if self.broker.url.expose() == DEV_BROKER_URL || self.broker.management_password.expose() == "guest" {
                bail!("production needs its own broker credentials, not RabbitMQ's guest account");
            }
            // Devices would refuse a plain broker address on another machine, retrying forever;
            // the service's own links carry its broker credentials.
            let broker_links = [
                ("broker.device_url", self.broker.device_url.as_str()),
                ("broker.url", self.broker.url.expose()),
                ("broker.management_url", self.broker.management_url.as_str()),
            ];
            for (setting, url) in broker_links {
                myscanner_protocol::tls::check_link(url, false).map_err(|e| anyhow::anyhow!("{setting}: {e}"))?;
            }
        }
        if self.ingest.enabled
            && (self.ingest.channels == 0 || self.ingest.prefetch < self.ingest.channels || self.ingest.batch_size == 0)
        {
            bail!(
                "ingest.channels and ingest.batch_size must be positive, and ingest.prefetch at least ingest.channels"
            );
        }
        crate::security::external::parse_ports(&self.security.external_ports)
            .map_err(|e| anyhow::anyhow!("security.external_ports: {e}"))?;
        if self.server.request_timeout_secs == 0 || self.auth.jwt_ttl_secs == 0 {
            bail!("server.request_timeout_secs and auth.jwt_ttl_secs must be positive");
        }
        if self.server.tls.as_ref().is_some_and(|tls| tls.reload_secs == 0) {
            bail!("server.tls.reload_secs must be positive");
        }
        if self.remote.idle_timeout_secs == 0 || self.remote.heartbeat_secs == 0 {
            bail!("remote.idle_timeout_secs and remote.heartbeat_secs must be positive");
        }
        if !(0..=crate::subscriptions::terms::MAX_GRACE_DAYS).contains(&self.subscriptions.grace_days) {
            bail!("subscriptions.grace_days must be 0–365");
        }
        if self.metrics.enabled && shares_a_port(self.metrics.listen, self.server.listen) {
            bail!("metrics.listen must not be server.listen: metrics are never served on the API's port");
        }
        Ok(())
    }
}

/// Whether two listen addresses would take the same port (port 0 is a fresh one each time).
fn shares_a_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A configuration value that must never reach a log: `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let printed = format!("{:?}", Config::default());
        assert!(!printed.contains(DEV_JWT_SECRET));
        assert!(!printed.contains("myscanner:myscanner"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn production_refuses_development_secrets() {
        let mut config = Config { environment: Environment::Production, ..Config::default() };
        assert!(config.validate().is_err());
        config.auth.jwt_secret = Secret::new("x".repeat(48));
        assert!(config.validate().is_err(), "the development database URL is refused too");
        config.database.url = Secret::new("postgres://app:s3cret@db.internal/myscanner");
        assert!(config.validate().is_err(), "an unverified database link is refused too");
        config.database.url = Secret::new("postgres://app:s3cret@db.internal/myscanner?sslmode=verify-full");
        assert!(config.validate().is_err(), "the guest broker account is refused too");
        config.broker.url = Secret::new("amqps://myscanner:s3cret@mq.internal:5671/%2f");
        config.broker.management_password = Secret::new("s3cret");
        config.broker.device_url = "amqp://mq.example:5672/%2f".into();
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.contains("broker.device_url") && refused.contains("unencrypted"), "{refused}");
        config.broker.device_url = "amqps://mq.example:5671/%2f".into();
        config.broker.management_url = "http://mq.internal:15672".into();
        assert!(config.validate().is_err(), "the management API's link carries credentials too");
        config.broker.management_url = "https://mq.internal:15671".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test harness decides the closure's type
    fn tls_comes_from_the_environment_too() {
        figment::Jail::expect_with(|jail| {
            assert!(Config::load(None).map_err(|e| e.to_string())?.server.tls.is_none());
            jail.set_env("MYSCANNER_SERVER__TLS__CERT_FILE", "/etc/myscanner/tls/cert.pem");
            jail.set_env("MYSCANNER_SERVER__TLS__KEY_FILE", "/etc/myscanner/tls/key.pem");
            let tls = Config::load(None).map_err(|e| e.to_string())?.server.tls.expect("TLS configured");
            assert_eq!(tls.key_file, Path::new("/etc/myscanner/tls/key.pem"));
            assert_eq!(tls.reload_secs, 10);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test harness decides the closure's type
    fn metrics_listen_on_loopback_by_default_and_move_with_the_environment() {
        figment::Jail::expect_with(|jail| {
            let metrics = Config::load(None).map_err(|e| e.to_string())?.metrics;
            assert!(metrics.enabled);
            assert_eq!(metrics.listen, SocketAddr::from(([127, 0, 0, 1], 9464)));
            jail.set_env("MYSCANNER_METRICS__LISTEN", "0.0.0.0:9100");
            jail.set_env("MYSCANNER_METRICS__ENABLED", "false");
            let metrics = Config::load(None).map_err(|e| e.to_string())?.metrics;
            assert_eq!((metrics.enabled, metrics.listen.port()), (false, 9100));
            Ok(())
        });
    }

    #[test]
    fn metrics_are_refused_on_the_api_port() {
        let mut config = Config::default();
        config.metrics.listen = config.server.listen;
        assert!(config.validate().unwrap_err().to_string().contains("metrics.listen"));
        config.metrics.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(config.validate().is_err(), "all interfaces include the API's");
        config.metrics.enabled = false;
        assert!(config.validate().is_ok(), "a listener that is off takes no port");
        config.metrics = MetricsConfig { enabled: true, listen: "127.0.0.1:0".parse().unwrap() };
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        assert!(config.validate().is_ok(), "port 0 is a fresh port each");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test harness decides the closure's type
    fn layers_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("myscanner.toml", "[server]\nlisten = \"127.0.0.1:9000\"\nrequest_timeout_secs = 5\n")?;
            jail.set_env("MYSCANNER_SERVER__REQUEST_TIMEOUT_SECS", "7");
            let config = Config::load(Some(Path::new("myscanner.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen.port(), 9000);
            assert_eq!(config.server.request_timeout_secs, 7);
            assert_eq!(config.auth.jwt_ttl_secs, 900);
            Ok(())
        });
    }
}
