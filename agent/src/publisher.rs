//! Sends the outbox to the broker with publisher confirms, and keeps doing so across
//! broker restarts and network failures.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};
use myscanner_protocol::tls;
use tokio_util::sync::CancellationToken;

use crate::api::BrokerAccess;
use crate::backoff::Backoff;
use crate::outbox::{Outbox, Position, Reader};

/// Unconfirmed messages in flight at once: enough to fill the pipe (thousands a second per
/// device), few enough that a reconnect re-sends little. Larger windows do not send more:
/// a fleet draining its backlogs at once (512 each) floods the quorum queue's log with
/// publishes, and the queue then starves its consumer (bench ingest).
pub const WINDOW: usize = 64;

pub struct Publisher {
    pub outbox: Arc<Outbox>,
    pub access: BrokerAccess,
    /// The device credential: also the device's broker password.
    pub password: String,
    /// The agent's TLS configuration (`amqps://`: the pinned CA, or the platform's roots).
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether plain `amqp://` to another machine is accepted (the device file's
    /// `allow_insecure`).
    pub allow_insecure: bool,
    /// A name the broker shows for the connection.
    pub connection_name: String,
}

impl Publisher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::broker();
        while !shutdown.is_cancelled() {
            let started = tokio::time::Instant::now();
            match self.session(&shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = tls::describe(&error), "publisher: broker connection lost");
                    backoff.connection_ended(started);
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        if let Err(error) = self.outbox.sync() {
            tracing::error!(error = %error, "publisher: could not save the outbox cursor");
        }
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        tls::check_link(&self.access.url, self.allow_insecure)?;
        let mut uri: AMQPUri = self.access.url.parse().map_err(|e| anyhow::anyhow!("broker url: {e}"))?;
        uri.authority.userinfo.username = self.access.username.clone();
        uri.authority.userinfo.password = self.password.clone();
        let properties = ConnectionProperties::default().with_connection_name(self.connection_name.clone().into());
        Ok(tls::amqp_connect(uri, properties, self.tls.clone()).await?)
    }

    async fn session(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        tracing::info!("publisher: connected");
        // Everything unconfirmed goes again: whatever was in flight on a lost connection.
        let mut reader = Reader::default();
        let mut next = self.outbox.confirmed();
        let mut in_flight: VecDeque<(Position, PublisherConfirm)> = VecDeque::new();
        let properties = BasicProperties::default()
            .with_user_id(ShortString::from(self.access.username.clone()))
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        loop {
            while in_flight.len() < WINDOW {
                let Some((payload, after)) = reader.read(&self.outbox, next)? else { break };
                let confirm = channel
                    .basic_publish(
                        self.access.exchange.as_str().into(),
                        self.access.routing_key.as_str().into(),
                        // Mandatory: an unroutable message comes back instead of vanishing.
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &payload,
                        properties.clone(),
                    )
                    .await?;
                in_flight.push_back((after, confirm));
                next = after;
            }
            let Some((after, confirm)) = in_flight.pop_front() else {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.outbox.appended() => continue,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            // Shutdown does not wait for confirms: what is unconfirmed is re-sent next time.
            let confirmation = tokio::select! {
                () = shutdown.cancelled() => break,
                confirmation = confirm => confirmation?,
            };
            match confirmation {
                Confirmation::Ack(None) => self.outbox.confirm(after, 1)?,
                Confirmation::Ack(Some(_)) => {
                    anyhow::bail!("the broker could not route a measurement (is the service's topology declared?)")
                }
                Confirmation::Nack(_) => anyhow::bail!("the broker refused a measurement"),
                Confirmation::NotRequested => unreachable!("confirms are selected"),
            }
        }
        let _ = connection.close(200, "agent stopping".into()).await;
        Ok(())
    }
}
