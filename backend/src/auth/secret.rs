//! Random bearer secrets for API tokens and devices: `<prefix>_<id>_<secret>`.
//!
//! The id (public, a UUID in hex) finds the row; the secret is 256 random bits of which only
//! the SHA-256 is stored, compared in constant time. The prefix tells a leaked token's kind
//! at a glance (and to secret scanners).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Customer-integration API tokens.
pub const API_TOKEN_PREFIX: &str = "myst";
/// Device credentials.
pub const DEVICE_PREFIX: &str = "mysd";

/// A freshly issued secret: the full token for its owner (shown once) and what is stored.
pub struct Issued {
    pub id: Uuid,
    pub token: String,
    pub hash: Vec<u8>,
}

pub fn issue(prefix: &str) -> Issued {
    let id = Uuid::now_v7();
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    Issued { id, token: format!("{prefix}_{}_{secret}", id.simple()), hash: hash(&secret) }
}

/// Splits a presented token of the given kind into its id and secret.
pub fn parse<'a>(prefix: &str, token: &'a str) -> Option<(Uuid, &'a str)> {
    let rest = token.strip_prefix(prefix)?.strip_prefix('_')?;
    let (id, secret) = rest.split_at_checked(32)?;
    let secret = secret.strip_prefix('_')?;
    Some((Uuid::try_parse(id).ok()?, secret))
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether `secret` hashes to `stored`, in time independent of where they differ.
pub fn matches(secret: &str, stored: &[u8]) -> bool {
    hash(secret).ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_back_and_match() {
        let issued = issue(DEVICE_PREFIX);
        let (id, secret) = parse(DEVICE_PREFIX, &issued.token).unwrap();
        assert_eq!(id, issued.id);
        assert!(matches(secret, &issued.hash));
        assert!(!matches("guess", &issued.hash));
        assert!(parse(API_TOKEN_PREFIX, &issued.token).is_none(), "kinds are not interchangeable");
        assert!(parse(DEVICE_PREFIX, "mysd_short").is_none());
    }
}
