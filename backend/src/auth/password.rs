//! Passwords: argon2id, hashed and verified off the async runtime (each takes tens of ms).

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::http::{Error, FieldError};

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 256;

/// A new password must be long enough to resist guessing; length beats composition rules.
pub fn check_strength(field: &str, password: &str) -> Result<(), Error> {
    let len = password.chars().count();
    if (MIN_LENGTH..=MAX_LENGTH).contains(&len) {
        Ok(())
    } else {
        Err(Error::Validation(vec![FieldError::new(
            field,
            format!("must be between {MIN_LENGTH} and {MAX_LENGTH} characters"),
        )]))
    }
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await
    .context("password hashing task")?
}

/// Whether `password` matches `hash`. With `hash = None` (no such user) a hash is still
/// verified, so that the answer takes as long and does not tell which accounts exist.
pub async fn verify(password: String, hash: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stored = hash.as_deref().unwrap_or(DUMMY_HASH);
        let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(matches && hash.is_some())
    })
    .await
    .context("password verification task")?
}

/// Turns at argon2: each computation takes ~19 MiB and a core for tens of milliseconds, so
/// a burst of sign-ins (which anyone may send) could otherwise take gigabytes. A request
/// that cannot get a turn within the wait is shed with 429 and `Retry-After`.
pub struct Turns {
    permits: tokio::sync::Semaphore,
    wait: std::time::Duration,
}

impl Turns {
    pub fn new(at_once: usize, wait: std::time::Duration) -> Self {
        Turns { permits: tokio::sync::Semaphore::new(at_once.max(1)), wait }
    }

    async fn take(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(permit) => Ok(permit.expect("the semaphore is never closed")),
            Err(_) => {
                tracing::warn!("password check shed: every turn is taken");
                Err(Error::TooManyRequests { retry_after: 1 })
            }
        }
    }

    /// [`verify`], in turn.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Error> {
        let _turn = self.take().await?;
        Ok(verify(password, hash).await?)
    }

    /// [`hash`], in turn.
    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let _turn = self.take().await?;
        Ok(hash(password).await?)
    }
}

/// The argon2id hash (default parameters) of a random password nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9aX3n0o0gYy9dW5a7sSmSg6c4Do0H7N7ZxD1b1rQ3fE";

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_verify_and_dummy_never_matches() {
        let hash = super::hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::verify("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!super::verify("wrong horse battery".into(), Some(hash)).await.unwrap());
        assert!(!super::verify("anything".into(), None).await.unwrap());
    }
}
