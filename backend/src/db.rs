//! The PostgreSQL pool and the schema migrations (`migrations/` at the workspace root,
//! embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    connect_pool(config, config.max_connections).await
}

/// A pool of at most `connections` on `database.url`.
pub async fn connect_pool(config: &DatabaseConfig, connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(connections)
        // A request waiting this long for a connection fails rather than piling up.
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect_options(config.url.expose())?)
        .await
        .context("cannot connect to PostgreSQL (database.url)")
}

/// The URL's options. A database on this machine is reached without TLS unless the URL
/// asks for it (`sslmode`): nothing leaves the machine, and sqlx's default ("prefer")
/// would encrypt every statement for nothing.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().context("database.url is not a PostgreSQL URL")?;
    Ok(if is_local(&options) && !asks_for_ssl_mode(url) { options.ssl_mode(PgSslMode::Disable) } else { options })
}

/// Whether an SSL mode was chosen: in the URL (as sqlx reads it, `sslmode` or `ssl-mode`)
/// or in `PGSSLMODE`.
fn asks_for_ssl_mode(url: &str) -> bool {
    let in_url = url::Url::parse(url)
        .map(|url| url.query_pairs().any(|(key, _)| key == "sslmode" || key == "ssl-mode"))
        .unwrap_or(false);
    in_url || std::env::var_os("PGSSLMODE").is_some()
}

/// Whether the link to the database stays on this machine, or is encrypted with the server
/// verified (`verify-full`, `verify-ca`).
pub fn verifies_its_peer(url: &str) -> anyhow::Result<bool> {
    let options = connect_options(url)?;
    Ok(is_local(&options) || matches!(options.get_ssl_mode(), PgSslMode::VerifyFull | PgSslMode::VerifyCa))
}

/// A Unix socket, or a loopback host.
fn is_local(options: &PgConnectOptions) -> bool {
    options.get_host().starts_with('/') || myscanner_protocol::tls::is_loopback(options.get_host())
}

pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.context("database migration failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_databases_skip_tls_unless_asked_and_remote_ones_must_verify_in_production() {
        let ssl = |url: &str| connect_options(url).unwrap().get_ssl_mode();
        assert!(matches!(ssl("postgres://app@127.0.0.1/db"), PgSslMode::Disable));
        assert!(matches!(ssl("postgres://app@localhost/db?sslmode=require"), PgSslMode::Require));
        assert!(matches!(ssl("postgres://app@localhost/db?ssl-mode=verify-full"), PgSslMode::VerifyFull));
        assert!(matches!(ssl("postgres://app@127.0.0.1/db?application_name=sslmode%3Drequire"), PgSslMode::Disable));
        assert!(matches!(ssl("postgres://app@db.internal/db"), PgSslMode::Prefer));
        assert!(verifies_its_peer("postgres://app@127.0.0.1/db").unwrap());
        assert!(!verifies_its_peer("postgres://app@db.internal/db").unwrap());
        assert!(!verifies_its_peer("postgres://app@db.internal/db?sslmode=require").unwrap());
        assert!(verifies_its_peer("postgres://app@db.internal/db?sslmode=verify-full").unwrap());
    }
}
