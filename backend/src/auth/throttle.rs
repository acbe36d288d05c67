//! Throttling of failed sign-ins, per account and per client address, in the database so
//! that every replica counts alike. A key that reaches its limit within the window is locked
//! until the window ends; a successful sign-in clears its account's count.

use std::net::IpAddr;

use sqlx::PgPool;

use crate::config::LoginThrottleConfig;
use crate::http::Error;

pub struct Keys {
    account: String,
    address: String,
}

impl Keys {
    pub fn new(email: &str, address: IpAddr) -> Self {
        Keys { account: format!("account:{}", email.trim().to_lowercase()), address: format!("address:{address}") }
    }
}

/// 429 with the seconds until the later lock ends, when either key is locked.
pub async fn check(db: &PgPool, keys: &Keys) -> Result<(), Error> {
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT ceil(extract(epoch FROM max(locked_until) - now()))::float8 FROM login_throttle
         WHERE key IN ($1, $2) AND locked_until > now()",
    )
    .bind(&keys.account)
    .bind(&keys.address)
    .fetch_one(db)
    .await?;
    match wait {
        Some(secs) => Err(Error::TooManyRequests { retry_after: secs.max(1.0) as u64 }),
        None => Ok(()),
    }
}

pub async fn record_failure(db: &PgPool, keys: &Keys, config: &LoginThrottleConfig) -> Result<(), Error> {
    let window = config.window_secs as f64;
    for (key, limit) in
        [(&keys.account, config.max_failures_per_account), (&keys.address, config.max_failures_per_address)]
    {
        // A window that has passed starts again at one failure.
        sqlx::query(
            "INSERT INTO login_throttle AS t (key, failures, window_started_at)
             VALUES ($1, 1, now())
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $2)
                               THEN 1 ELSE t.failures + 1 END,
               window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $2)
                                        THEN now() ELSE t.window_started_at END",
        )
        .bind(key)
        .bind(window)
        .execute(db)
        .await?;
        sqlx::query(
            "UPDATE login_throttle SET locked_until = window_started_at + make_interval(secs => $2)
             WHERE key = $1 AND failures >= $3",
        )
        .bind(key)
        .bind(window)
        .bind(limit)
        .execute(db)
        .await?;
    }
    Ok(())
}

pub async fn clear_account(db: &PgPool, keys: &Keys) -> Result<(), Error> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1").bind(&keys.account).execute(db).await?;
    Ok(())
}
