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
