//! RabbitMQ: the topology the service declares, and the management API through which each
//! device gets a broker user of its own.

pub mod management;

use futures_util::{Stream, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use myscanner_protocol::MEASUREMENTS_EXCHANGE;

/// The durable quorum queue the ingest consumer reads.
pub const INGEST_QUEUE: &str = "measurements.ingest";
/// Where messages that can never be stored go, each with an `x-rejection-reason` header.
pub const DEAD_LETTER_EXCHANGE: &str = "measurements.dead";
pub const DEAD_LETTER_QUEUE: &str = "measurements.dead";

/// The service's own AMQP connection; `amqps://` trusts the platform's roots.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let uri = url.parse().map_err(|e: String| lapin::Error::from(std::io::Error::other(e)))?;
    myscanner_protocol::tls::amqp_connect(uri, properties, myscanner_protocol::tls::platform_client_config()).await
}

/// Consumes `queue` over `channels` channels of the connection, sharing `prefetch` unacked
/// messages between them: the broker serialises each channel's deliveries in one process,
/// which publishers' traffic can starve. Each delivery comes with the index of its
/// channel, on which it must be acked. A consumer the broker cancels yields an error
/// (rather than leaving the others to carry on alone), so that the caller reconnects.
pub async fn consume(
    connection: &Connection,
    queue: &str,
    tag: &str,
    channels: u16,
    prefetch: u16,
) -> lapin::Result<(Vec<Channel>, impl Stream<Item = (usize, anyhow::Result<Delivery>)> + Unpin + use<>)> {
    let mut opened = vec![];
    let mut consumers = vec![];
    for n in 0..usize::from(channels) {
        let channel = connection.create_channel().await?;
        channel.basic_qos(prefetch / channels, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                format!("{tag}-{n}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let cancelled = futures_util::stream::iter([(n, Err(anyhow::anyhow!("consumer {n} cancelled by the broker")))]);
        consumers.push(consumer.map(move |delivery| (n, delivery.map_err(anyhow::Error::from))).chain(cancelled));
        opened.push(channel);
    }
    Ok((opened, futures_util::stream::select_all(consumers)))
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
