//! Throttling of password guesses — sign-ins and `current_password` on a password change —
//! per account and per client address, in the database so that every replica counts alike.
//!
//! An attempt is counted *before* its password is verified, in one statement for both keys:
//! concurrent guesses cannot all slip past a check made before any failure was recorded. A
//! key past its limit within the window is refused until the window ends; a right password
//! gives its attempt back (the account's count is cleared).
//!
//! The account key is the e-mail folded by the database's own `lower()` — the very fold the
//! account lookup uses — so every spelling that finds an account (`MIA@x`, `mİa@x`) counts
//! against the same budget, and one that finds none behaves alike (nothing tells them apart).

use std::net::IpAddr;

use sqlx::PgPool;
use uuid::Uuid;

use crate::config::LoginThrottleConfig;
use crate::http::Error;

pub struct Keys {
    account: String,
    address: String,
}

impl Keys {
    /// The keys of a sign-in with `email` (as typed) from `address`.
    pub async fn sign_in(db: &PgPool, email: &str, address: IpAddr) -> Result<Keys, Error> {
        let folded = sqlx::query_scalar!(r#"SELECT lower($1) AS "folded!""#, email.trim()).fetch_one(db).await?;
        Ok(Keys { account: format!("account:{folded}"), address: format!("address:{address}") })
    }

    /// The keys of a signed-in user's guess at their own password.
    pub async fn user(db: &PgPool, user_id: Uuid, address: IpAddr) -> Result<Keys, Error> {
        let folded = sqlx::query_scalar!(r#"SELECT lower(email) AS "folded!" FROM users WHERE id = $1"#, user_id)
            .fetch_one(db)
            .await?;
        Ok(Keys { account: format!("account:{folded}"), address: format!("address:{address}") })
    }
}

/// An attempt counted against both keys, not yet known to be right.
#[must_use = "a right password gives the attempt back with `succeeded`"]
pub struct Attempt<'a> {
    keys: &'a Keys,
}

/// Counts an attempt against both keys; 429 with the seconds until the later window ends
/// when either is past its limit.
pub async fn attempt<'a>(db: &PgPool, keys: &'a Keys, config: &LoginThrottleConfig) -> Result<Attempt<'a>, Error> {
    // A window that has passed starts again at this attempt.
    let counts = sqlx::query!(
        r#"INSERT INTO login_throttle AS t (key, failures, window_started_at)
         VALUES ($1, 1, now()), ($2, 1, now())
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                           THEN 1 ELSE t.failures + 1 END,
           window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                                    THEN now() ELSE t.window_started_at END
         RETURNING failures - CASE key WHEN $1 THEN $4::int4 ELSE $5::int4 END AS "over!",
                   extract(epoch FROM t.window_started_at + make_interval(secs => $3) - now())::float8 AS "left!""#,
        &keys.account,
        &keys.address,
        config.window_secs as f64,
        config.max_failures_per_account,
        config.max_failures_per_address,
    )
    .fetch_all(db)
    .await?;
    let wait = counts.iter().filter(|c| c.over > 0).map(|c| c.left.ceil()).reduce(f64::max);
    match wait {
        Some(secs) => Err(Error::TooManyRequests { retry_after: secs.max(1.0) as u64 }),
        None => Ok(Attempt { keys }),
    }
}

impl Attempt<'_> {
    /// The password could not be checked (the service shed the request): the attempt is
    /// given back to both keys.
    pub async fn not_made(self, db: &PgPool) -> Result<(), Error> {
        sqlx::query!(
            "UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key IN ($1, $2)",
            &self.keys.account,
            &self.keys.address,
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// The password was right: the account starts afresh, and the address gets its attempt
    /// back (a right password is not a guess).
    pub async fn succeeded(self, db: &PgPool) -> Result<(), Error> {
        sqlx::query!(
            "WITH cleared AS (DELETE FROM login_throttle WHERE key = $1)
             UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key = $2",
            &self.keys.account,
            &self.keys.address,
        )
        .execute(db)
        .await?;
        Ok(())
    }
}
