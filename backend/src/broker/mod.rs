//! RabbitMQ: the topology the service declares, and the management API through which each
//! device gets a broker user of its own.

pub mod management;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use myscanner_protocol::MEASUREMENTS_EXCHANGE;

/// The durable quorum queue the ingest consumer reads.
pub const INGEST_QUEUE: &str = "measurements.ingest";
/// Where messages that can never be stored go, each with an `x-rejection-reason` header.
pub const DEAD_LETTER_EXCHANGE: &str = "measurements.dead";
pub const DEAD_LETTER_QUEUE: &str = "measurements.dead";

pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await
}

/// Declares (idempotently) the exchanges and queues; called on every (re)connect so a
/// broker that lost its definitions gets them back.
pub async fn declare_topology(channel: &Channel) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(MEASUREMENTS_EXCHANGE.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    channel.exchange_declare(DEAD_LETTER_EXCHANGE.into(), ExchangeKind::Fanout, durable, FieldTable::default()).await?;

    // Quorum queues are replicated across a cluster and durable; no delivery limit, because
    // a long database outage redelivers good messages many times and none may be dropped.
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let queue = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(DEAD_LETTER_QUEUE.into(), queue, quorum.clone()).await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_LETTER_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.queue_declare(INGEST_QUEUE.into(), queue, quorum).await?;
    channel
        .queue_bind(
            INGEST_QUEUE.into(),
            MEASUREMENTS_EXCHANGE.into(),
            "device.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
