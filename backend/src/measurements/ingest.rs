//! The ingest consumer: measurements from RabbitMQ into PostgreSQL, exactly once.
//!
//! - Bounded prefetch; batches by size and time; one transaction per batch.
//! - A message is acked only after its batch committed; redelivery is harmless because
//!   `(device_id, measurement_id)` is unique.
//! - A message that can never be stored is recorded, dead-lettered with its reason, and
//!   acked — it never blocks the messages behind it.
//! - A database error drops nothing and acks nothing: the batch is retried with backoff.
//! - A lost broker connection is re-established with backoff and the topology re-declared.
//! - The next batch is gathered, parsed and joined with its devices while the previous
//!   one commits, and a batch commits in one statement: one round trip to the database.
//! - Shutdown finishes the batches in hand, then closes the channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{BasicProperties, Channel};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::store::{self, RejectedMessage};
use super::validate::{self, Incoming, Parsed, Rejection, Row};
use crate::broker::{self, DEAD_LETTER_EXCHANGE, INGEST_QUEUE};
use crate::config::{BrokerConfig, IngestConfig};
use crate::metrics::Metrics;

/// Whether the consumer currently holds a broker connection (for `/readyz`).
#[derive(Clone, Default)]
pub struct IngestStatus(Arc<AtomicBool>);

impl IngestStatus {
    pub fn connected(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }
}

/// Deliveries, ready to store: the rows of those that can be stored and the rejections
/// of those that never can, each with the index of its delivery.
struct Batch {
    /// With the index of the channel each came on.
    deliveries: Vec<(usize, Delivery)>,
    rows: Vec<Row>,
    row_index: Vec<usize>,
    rejections: Vec<(usize, Rejection)>,
}

pub struct Consumer {
    db: PgPool,
    broker_url: String,
    user_prefix: String,
    config: IngestConfig,
    status: IngestStatus,
    metrics: Metrics,
}

/// Exponential backoff between `min` and `max`.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff { next: min, min, max }
    }

    fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Consumer {
    pub fn new(
        db: PgPool,
        broker: &BrokerConfig,
        config: IngestConfig,
        status: IngestStatus,
        metrics: Metrics,
    ) -> Self {
        Consumer {
            db,
            broker_url: broker.url.expose().to_owned(),
            user_prefix: broker.device_user_prefix.clone(),
            config,
            status,
            metrics,
        }
    }

    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !shutdown.is_cancelled() {
            match self.session(&shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(error) => {
                    self.status.set(false);
                    let wait = backoff.step();
                    tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "ingest: broker connection lost");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.status.set(false);
        tracing::info!("ingest: stopped");
    }

    /// One connection's lifetime. `Ok` only on shutdown.
    async fn session(&self, shutdown: &CancellationToken, backoff: &mut Backoff) -> anyhow::Result<()> {
        let connection = broker::connect(&self.broker_url, "myscanner-ingest").await?;
        // Dead letters are published on a confirmed channel of their own: a rejected
        // message is acked only once the broker holds its dead-letter copy.
        let dead_letters = connection.create_channel().await?;
        broker::declare_topology(&dead_letters).await?;
        dead_letters.confirm_select(ConfirmSelectOptions::default()).await?;
        let (channels, mut deliveries) =
            broker::consume(&connection, INGEST_QUEUE, "myscanner-ingest", self.config.channels, self.config.prefetch)
                .await?;
        self.status.set(true);
        backoff.reset();
        tracing::info!(channels = self.config.channels, "ingest: consuming");

        // Two stages, so that the next batch is gathered and prepared while the previous one
        // is being committed: the reader hands prepared batches to the writer through a
        // one-slot channel, and the writer stores, dead-letters and acks them in order.
        let (handoff, batches) = tokio::sync::mpsc::channel::<Batch>(1);
        // `async move`: the reader owns the sending end, so the writer sees the end of the
        // batches once the reader stops.
        let reader = async move {
            let batch_timeout = Duration::from_millis(self.config.batch_timeout_ms);
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = deliveries.next() => next,
                };
                let (channel, first) = first.ok_or_else(|| anyhow::anyhow!("every consumer ended"))?;
                let mut deliveries_in_batch = vec![(channel, first?)];
                let deadline = tokio::time::Instant::now() + batch_timeout;
                while deliveries_in_batch.len() < self.config.batch_size {
                    match tokio::time::timeout_at(deadline, deliveries.next()).await {
                        Ok(Some((channel, delivery))) => deliveries_in_batch.push((channel, delivery?)),
                        Ok(None) | Err(_) => break,
                    }
                }
                // Unacked on shutdown: redelivered to whoever consumes next.
                let Some(batch) = self.prepare(deliveries_in_batch, shutdown).await else { break };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = handoff.send(batch) => if sent.is_err() { break }, // the writer stopped
                }
            }
            anyhow::Ok(())
        };
        let (consume_channels, dead_letter_channel) = (&channels, &dead_letters);
        // The writer owns the receiving end: when it stops, for whatever reason, the
        // reader's next hand-off fails and the reader stops too.
        let writer = async move {
            let mut batches = batches;
            // Shutdown lets the writer finish the batch in hand: it is committed and acked,
            // or left unacked for redelivery if the database cannot be reached.
            while let Some(batch) = batches.recv().await {
                if !self.handle(consume_channels, dead_letter_channel, batch, shutdown).await? {
                    break;
                }
            }
            anyhow::Ok(())
        };
        // The first stage to fail ends both, and the session: the caller reconnects.
        tokio::try_join!(reader, writer)?;
        for channel in &channels {
            let _ = channel.close(200, "shutdown".into()).await;
        }
        let _ = connection.close(200, "shutdown".into()).await;
        Ok(())
    }

    /// Parses a batch and joins it with what the database knows of its devices. `None`
    /// when shutdown interrupted a database retry.
    async fn prepare(&self, deliveries: Vec<(usize, Delivery)>, shutdown: &CancellationToken) -> Option<Batch> {
        let parsed: Vec<Result<Parsed, Rejection>> = deliveries
            .iter()
            .map(|(_, d)| validate::parse(&incoming(d), &self.user_prefix, self.config.max_message_bytes))
            .collect();
        let mut device_ids: Vec<_> =
            parsed.iter().filter_map(|p| p.as_ref().ok().map(|p| p.measurement.device_id)).collect();
        device_ids.sort_unstable();
        device_ids.dedup();
        let devices = retrying(shutdown, || store::known_devices(&self.db, &device_ids)).await?;
        let mut batch =
            Batch { rows: Vec::with_capacity(deliveries.len()), deliveries, row_index: vec![], rejections: vec![] };
        // Each parsed message moves into its row: the profile's bytes are never copied.
        for (i, result) in parsed.into_iter().enumerate() {
            match result.and_then(|p| validate::to_row(p, &devices)) {
                Ok(row) => {
                    batch.row_index.push(i);
                    batch.rows.push(row);
                }
                Err(rejection) => batch.rejections.push((i, rejection)),
            }
        }
        Some(batch)
    }

    /// Stores a batch and acks it. Returns `false` when shutdown interrupted a database
    /// retry (nothing acked; the broker redelivers).
    async fn handle(
        &self,
        channels: &[Channel],
        dead_letters: &Channel,
        batch: Batch,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        // Each attempt is timed (or counted as failed) for metrics.
        let attempt = || async {
            let started = Instant::now();
            let stored = self.store(&batch).await;
            self.metrics.ingest_batch_store(started.elapsed(), stored.is_ok());
            stored
        };
        let Some(rejections) = retrying(shutdown, attempt).await else { return Ok(false) };
        let deliveries = &batch.deliveries;
        for (i, rejection) in &rejections {
            let delivery = &deliveries[*i].1;
            self.metrics.ingest_rejected(&rejection.reason);
            tracing::warn!(reason = %rejection.reason, routing_key = %delivery.routing_key, "ingest: message rejected");
            dead_letter(dead_letters, delivery, &rejection.reason).await?;
        }
        // Batches are handled in delivery order, so one multiple-ack per channel, of its
        // last delivery here, covers the batch.
        for (n, channel) in channels.iter().enumerate() {
            if let Some((_, last)) = deliveries.iter().rev().find(|(c, _)| *c == n) {
                channel.basic_ack(last.delivery_tag, BasicAckOptions { multiple: true }).await?;
            }
        }
        Ok(true)
    }

    /// Stores a batch's rows and records its rejections; returns every message rejected
    /// (by index), including any the database itself refused. An error here is transient.
    async fn store(&self, batch: &Batch) -> sqlx::Result<Vec<(usize, Rejection)>> {
        let Batch { deliveries, rows, row_index, rejections } = batch;
        match store::write(&self.db, rows, &rejected_messages(deliveries, rejections)).await {
            Ok(stored) => {
                self.metrics.ingest_stored(rows.len(), stored);
                tracing::debug!(
                    messages = deliveries.len(),
                    stored,
                    rejected = rejections.len(),
                    "ingest: batch committed"
                );
                Ok(rejections.clone())
            }
            // Something in the batch is refused by the database itself: find what, one
            // message at a time, and reject it instead of retrying the batch for ever.
            Err(error) if store::is_permanent(&error) => {
                tracing::warn!(error = %error, "ingest: the database refused part of a batch; storing one by one");
                let mut rejections = rejections.clone();
                for (i, row) in row_index.iter().zip(rows) {
                    match store::write(&self.db, std::slice::from_ref(row), &[]).await {
                        Ok(stored) => self.metrics.ingest_stored(1, stored),
                        Err(error) if store::is_permanent(&error) => {
                            let reason = match &error {
                                sqlx::Error::Database(db) => format!("refused by the database: {}", db.message()),
                                other => format!("refused by the database: {other}"),
                            };
                            rejections.push((*i, validate::reject(reason, Some(row.device_id))));
                        }
                        Err(error) => return Err(error),
                    }
                }
                rejections.sort_by_key(|(i, _)| *i);
                store::write(&self.db, &[], &rejected_messages(deliveries, &rejections)).await?;
                Ok(rejections)
            }
            Err(error) => Err(error),
        }
    }
}

/// Runs a database step until it succeeds: an error here is transient (the database is
/// unreachable), so it is retried with backoff, and nothing is dropped or acked meanwhile.
/// `None` when shutdown came first.
async fn retrying<T, F, Fut>(shutdown: &CancellationToken, mut step: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match step().await {
            Ok(done) => return Some(done),
            Err(error) => {
                let wait = backoff.step();
                tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "ingest: database unavailable; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

fn incoming(delivery: &Delivery) -> Incoming<'_> {
    Incoming {
        body: &delivery.data,
        routing_key: delivery.routing_key.as_str(),
        user_id: delivery.properties.user_id().as_ref().map(ShortString::as_str),
    }
}

fn rejected_messages<'a>(
    batch: &'a [(usize, Delivery)],
    rejections: &'a [(usize, Rejection)],
) -> Vec<RejectedMessage<'a>> {
    rejections
        .iter()
        .map(|(i, rejection)| {
            let delivery = &batch[*i].1;
            RejectedMessage {
                rejection,
                body: &delivery.data,
                routing_key: delivery.routing_key.as_str(),
                broker_user: delivery.properties.user_id().as_ref().map(ShortString::as_str),
            }
        })
        .collect()
}

/// Publishes a copy of the message to the dead-letter exchange with the reason, and waits
/// for the broker to confirm it.
async fn dead_letter(channel: &Channel, delivery: &Delivery, reason: &str) -> anyhow::Result<()> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-rejection-reason".into(), AMQPValue::LongString(reason.into()));
    headers.insert("x-original-routing-key".into(), AMQPValue::LongString(delivery.routing_key.as_str().into()));
    if let Some(user) = delivery.properties.user_id() {
        headers.insert("x-original-user-id".into(), AMQPValue::LongString(user.as_str().into()));
    }
    let properties = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
    let confirm = channel
        .basic_publish(
            DEAD_LETTER_EXCHANGE.into(),
            "".into(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "the broker refused a dead letter");
    Ok(())
}
