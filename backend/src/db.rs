//! The PostgreSQL pool and the schema migrations (`migrations/` at the workspace root,
//! embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseConfig;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        // A request waiting this long for a connection fails rather than piling up.
        .acquire_timeout(Duration::from_secs(5))
        .connect(config.url.expose())
        .await
        .context("cannot connect to PostgreSQL (database.url)")
}

pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(db).await.context("database migration failed")
}
