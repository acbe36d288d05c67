//! RabbitMQ's management API, for the one thing the service needs from it: a broker user
//! per device, allowed to publish only its own measurements.
//!
//! The device's broker password is its device credential (RabbitMQ stores a salted hash),
//! so one secret serves HTTPS and AMQP, and rotating or revoking it covers both.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::BrokerConfig;

#[derive(Clone)]
pub struct Management {
    client: reqwest::Client,
    base: String,
    username: String,
    password: String,
    /// Percent-encoded, as it appears in API paths.
    vhost: String,
    user_prefix: String,
}

impl Management {
    pub fn new(config: &BrokerConfig) -> anyhow::Result<Self> {
        let uri: lapin::uri::AMQPUri =
            config.url.expose().parse().map_err(|e| anyhow::anyhow!("broker.url is not an AMQP URL: {e}"))?;
        Ok(Management {
            client: reqwest::Client::builder()
                .use_preconfigured_tls((*myscanner_protocol::tls::platform_client_config()).clone())
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            base: config.management_url.trim_end_matches('/').to_owned(),
            username: config.management_username.clone(),
            password: config.management_password.expose().to_owned(),
            vhost: encode(&uri.vhost),
            user_prefix: config.device_user_prefix.clone(),
        })
    }

    /// The broker user of a device.
    pub fn device_user(&self, device_id: Uuid) -> String {
        format!("{}{device_id}", self.user_prefix)
    }

    /// The device that a broker user is, if it is one.
    pub fn device_of(&self, user: &str) -> Option<Uuid> {
        user.strip_prefix(&self.user_prefix)?.parse().ok()
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<reqwest::Response> {
        let response = request
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("broker management API unreachable ({what})"))?;
        if !(response.status().is_success() || response.status() == StatusCode::NOT_FOUND) {
            bail!("broker management API refused {what}: {}", response.status());
        }
        Ok(response)
    }

    /// Creates the device's user, or sets a new password for it, with permissions to write
    /// only to the measurements exchange and only on the device's own routing key. Existing
    /// connections are closed so that they must authenticate with the new password.
    pub async fn put_device_user(&self, device_id: Uuid, password: &str) -> anyhow::Result<()> {
        let user = self.device_user(device_id);
        let base = &self.base;
        let vhost = &self.vhost;
        self.send(
            self.client.put(format!("{base}/api/users/{user}")).json(&json!({"password": password, "tags": ""})),
            "create user",
        )
        .await?;
        let exchange = myscanner_protocol::MEASUREMENTS_EXCHANGE;
        self.send(
            self.client
                .put(format!("{base}/api/permissions/{vhost}/{user}"))
                .json(&json!({"configure": "^$", "write": format!("^{exchange}$"), "read": "^$"})),
            "set permissions",
        )
        .await?;
        let routing_key = regex_escape(&myscanner_protocol::routing_key(device_id));
        self.send(
            self.client
                .put(format!("{base}/api/topic-permissions/{vhost}/{user}"))
                .json(&json!({"exchange": exchange, "write": format!("^{routing_key}$"), "read": "^$"})),
            "set topic permissions",
        )
        .await?;
        self.close_connections(&user).await
    }

    /// Deletes the device's user and closes its connections: the device is cut off at once.
    pub async fn delete_device_user(&self, device_id: Uuid) -> anyhow::Result<()> {
        let user = self.device_user(device_id);
        self.send(self.client.delete(format!("{}/api/users/{user}", self.base)), "delete user").await?;
        self.close_connections(&user).await
    }

    async fn close_connections(&self, user: &str) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Connection {
            name: String,
            user: String,
        }
        let url = format!("{}/api/vhosts/{}/connections", self.base, self.vhost);
        let response = self.send(self.client.get(url), "list connections").await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let connections: Vec<Connection> = response.json().await.context("connections listing")?;
        for connection in connections.into_iter().filter(|c| c.user == user) {
            let url = format!("{}/api/connections/{}", self.base, encode(&connection.name));
            self.send(self.client.delete(url).header("X-Reason", "device credential changed"), "close connection")
                .await?;
        }
        Ok(())
    }
}

/// Percent-encodes a path segment (vhost and connection names hold `/`, spaces, `:`…).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_string() } else { format!("\\{c}") }).collect()
}
