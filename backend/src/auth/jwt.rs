//! The dashboard's short-lived session tokens: HS256 JWTs, algorithm pinned, with `exp`,
//! `iss` and `aud` validated. They carry only who the user is; permissions are read from the
//! database on every request, so a removed membership takes effect at once.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::AuthConfig;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    /// The user's session epoch when issued: a password change moves it on, ending every
    /// session issued before.
    #[serde(default)]
    pub epoch: i32,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// What one replica asks of another when it routes a remote session to the tunnel that
/// replica holds: good for one session to one device, for a minute.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaClaims {
    /// The session.
    pub sub: Uuid,
    pub device: Uuid,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    replica_validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl JwtKeys {
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        // Only HS256 is accepted: a token naming any other algorithm, `none` included, fails.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        // Replica tokens have an audience of their own: never valid as a user's token, and
        // a user's token is never valid between replicas.
        let mut replica_validation = validation.clone();
        replica_validation.set_audience(&[replica_audience(&config.jwt_audience)]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            replica_validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl_secs: config.jwt_ttl_secs,
        }
    }

    /// A token for `user_id` in session epoch `epoch`, and its lifetime in seconds.
    pub fn issue(&self, user_id: Uuid, epoch: i32) -> anyhow::Result<(String, u64)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            epoch,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + i64::try_from(self.ttl_secs)?,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, self.ttl_secs))
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|data| data.claims)
    }

    pub fn issue_replica(&self, session_id: Uuid, device_id: Uuid) -> anyhow::Result<String> {
        let claims = ReplicaClaims {
            sub: session_id,
            device: device_id,
            iss: self.issuer.clone(),
            aud: replica_audience(&self.audience),
            exp: chrono::Utc::now().timestamp() + 60,
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    pub fn verify_replica(&self, token: &str) -> Option<ReplicaClaims> {
        jsonwebtoken::decode::<ReplicaClaims>(token, &self.decoding, &self.replica_validation).ok().map(|d| d.claims)
    }
}

fn replica_audience(audience: &str) -> String {
    format!("{audience}.replica")
}
