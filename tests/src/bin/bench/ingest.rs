//! `bench.sh ingest`: measurements from agents through RabbitMQ into PostgreSQL, next to
//! what PostgreSQL alone and the broker alone sustain with the same messages, over plain
//! AMQP and AMQPS; then the record → commit latency under a steady load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use myscanner::measurements::{store, validate};
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::MeasurementV1;
use myscanner_tests::bench::{CpuTimes, percentile};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fleet::{Fleet, Link, fleet, replica, start_agents, stop_agents};

fn generate(fleet: &Fleet, per_device: usize) -> Vec<Vec<MeasurementV1>> {
    fleet
        .devices
        .iter()
        .enumerate()
        .map(|(i, (device_id, _))| {
            let mut factory = MeasurementFactory::new(*device_id, fleet.site_id, i % 4 == 3);
            (0..per_device).map(|_| factory.next(chrono::Utc::now())).collect()
        })
        .collect()
}

async fn count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM measurements").fetch_one(db).await.unwrap()
}

/// The last ingestion sequence number taken (0 before the first).
async fn sequence_taken(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM measurements_seq")
        .fetch_one(db)
        .await
        .unwrap()
}

/// The ingestion sequence's high-water mark: an index lookup, so that watching progress
/// does not itself load the database (the bench sends no duplicates, so it counts rows).
async fn high_water(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM measurements").fetch_one(db).await.unwrap()
}

/// What one phase of a benchmark measured over its rounds: a rate per round, and the CPU
/// the processes involved used.
#[derive(Default)]
struct Phase {
    rates: Vec<f64>,
    cpu: CpuTimes,
    seconds: f64,
    items: usize,
}

impl Phase {
    fn add(&mut self, items: usize, seconds: f64, cpu: CpuTimes) {
        self.rates.push(items as f64 / seconds);
        self.cpu += cpu;
        self.seconds += seconds;
        self.items += items;
    }

    fn median(&self) -> f64 {
        percentile(&mut self.rates.clone(), 50.0)
    }

    fn rounds(&self) -> String {
        self.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    }

    fn cpu_per_item(&self) -> String {
        self.cpu.per_item(self.items, self.seconds)
    }
}

/// PostgreSQL alone: the service's own batched insert of the same rows, no broker.
async fn postgres_ceiling(fleet: &Fleet, rows: &[validate::Row], batch_size: usize, phase: &mut Phase) {
    let cpu = CpuTimes::now(fleet.service.pid());
    let started = Instant::now();
    for chunk in rows.chunks(batch_size) {
        store::write(&fleet.db, chunk, &[]).await.unwrap();
    }
    phase.add(rows.len(), started.elapsed().as_secs_f64(), CpuTimes::now(fleet.service.pid()) - cpu);
    sqlx::query("TRUNCATE measurements, load_profiles").execute(&fleet.db).await.unwrap();
}

/// A device's routing key and its messages' bodies.
type DeviceBodies = (String, Vec<Vec<u8>>);

/// RabbitMQ alone: the same bodies published as the agents publish them — with confirms
/// and the agents' window, through a topic exchange with the devices' routing keys,
/// `user_id` and `mandatory` — over as many connections as there are devices, to a quorum
/// queue.
async fn broker_ceiling(fleet: &Fleet, bodies: &Arc<Vec<DeviceBodies>>, phase: &mut Phase) {
    const CEILING: &str = "bench.ceiling";
    let url = format!("amqp://guest:guest@127.0.0.1:5672/{}", fleet.vhost);
    let total: usize = bodies.iter().map(|(_, b)| b.len()).sum();
    let consumer_connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = consumer_connection.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(CEILING.into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel
        .queue_declare(CEILING.into(), QueueDeclareOptions { durable: true, ..Default::default() }, quorum)
        .await
        .unwrap();
    channel
        .queue_bind(CEILING.into(), CEILING.into(), "device.*".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    // Consumed the way the service consumes: over as many channels, with the same prefetch,
    // acked every batch.
    let ingest = myscanner::config::Config::load(None).expect("the service's configuration").ingest;
    let (_channels, mut deliveries) =
        myscanner::broker::consume(&consumer_connection, CEILING, "bench", ingest.channels, ingest.prefetch)
            .await
            .unwrap();
    let cpu = CpuTimes::now(fleet.service.pid());
    let started = Instant::now();
    let mut publishers = vec![];
    for device in 0..bodies.len() {
        let (url, bodies) = (url.clone(), bodies.clone());
        publishers.push(tokio::spawn(async move {
            let (key, bodies) = &bodies[device];
            let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
            let channel = connection.create_channel().await.unwrap();
            channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
            let properties = BasicProperties::default()
                .with_user_id("guest".into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            let mut in_flight = std::collections::VecDeque::new();
            for body in bodies {
                let options = BasicPublishOptions { mandatory: true, ..Default::default() };
                in_flight.push_back(
                    channel
                        .basic_publish(CEILING.into(), key.as_str().into(), options, body, properties.clone())
                        .await
                        .unwrap(),
                );
                if in_flight.len() >= myscanner_agent::publisher::WINDOW {
                    in_flight.pop_front().unwrap().await.unwrap();
                }
            }
            for confirm in in_flight {
                confirm.await.unwrap();
            }
        }));
    }
    // Per channel: deliveries not acked yet, and the last of them.
    let mut unacked: Vec<(usize, Option<lapin::message::Delivery>)> = (0..ingest.channels).map(|_| (0, None)).collect();
    for _ in 0..total {
        let (n, delivery) = deliveries.next().await.unwrap();
        unacked[n] = (unacked[n].0 + 1, Some(delivery.unwrap()));
        if unacked[n].0 == ingest.batch_size {
            let (_, last) = std::mem::take(&mut unacked[n]);
            last.unwrap().acker.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    for (_, last) in unacked {
        if let Some(last) = last {
            last.acker.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    phase.add(total, started.elapsed().as_secs_f64(), CpuTimes::now(fleet.service.pid()) - cpu);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let _ = consumer_connection.close(200, "done".into()).await;
}

/// The service's memory over the end-to-end runs, in MiB.
#[derive(Default)]
struct Memory {
    before: f64,
    first_half: f64,
    second_half: f64,
}

/// End to end, as fast as the agents can go. Like the broker ceiling's ready bodies, the
/// measurements are in the agents' outboxes before the clock starts; the clock then runs
/// from the agents' start (outbox → broker → consumer → PostgreSQL) to the last commit.
async fn end_to_end(fleet: &Fleet, link: &Link, records: &[Vec<Vec<u8>>], phase: &mut Phase, memory: &mut Memory) {
    let total: usize = records.iter().map(Vec::len).sum();
    let dirs: Vec<tempfile::TempDir> = records.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, records) in dirs.iter().zip(records) {
        myscanner_agent::outbox::Outbox::open(dir.path()).unwrap().append(records).unwrap();
    }
    let base = sequence_taken(&fleet.db).await;
    if memory.before == 0.0 {
        memory.before = fleet.service.rss_mib();
    }
    let cpu = CpuTimes::now(fleet.service.pid());
    let started = Instant::now();
    let agents = start_agents(fleet, link, &dirs).await;
    loop {
        let stored = (high_water(&fleet.db).await - base).max(0) as usize;
        let rss = fleet.service.rss_mib();
        let half = if stored < total / 2 { &mut memory.first_half } else { &mut memory.second_half };
        *half = half.max(rss);
        if stored >= total {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "end-to-end run did not finish: {stored}/{total}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase.add(total, started.elapsed().as_secs_f64(), CpuTimes::now(fleet.service.pid()) - cpu);
    stop_agents(agents).await;
    assert_eq!(count(&fleet.db).await as usize, total, "every measurement stored once");
    sqlx::query("TRUNCATE measurements, load_profiles").execute(&fleet.db).await.unwrap();
}

pub async fn run(devices: usize, total: usize, rounds: usize) {
    let per_device = total / devices;
    let total = per_device * devices;
    println!(
        "bench ingest: {devices} devices, {total} measurements with 3D load profiles; {rounds} rounds of the three runs, \
         interleaved, each figure the median"
    );
    let fleet = fleet(devices).await;
    let messages = generate(&fleet, per_device);
    let records: Vec<Vec<Vec<u8>>> =
        messages.iter().map(|device| device.iter().map(|m| serde_json::to_vec(m).unwrap()).collect()).collect();
    let bytes: usize = records.iter().flatten().map(Vec::len).sum();
    println!("  message size: {:.1} KiB on average", bytes as f64 / total as f64 / 1024.0);
    let ids: Vec<Uuid> = fleet.devices.iter().map(|d| d.0).collect();
    let devices_known = store::known_devices(&fleet.db, &ids).await.unwrap();
    let rows: Vec<validate::Row> = messages
        .iter()
        .flatten()
        .map(|m| validate::check(m.clone()).and_then(|p| validate::to_row(p, &devices_known)).expect("valid"))
        .collect();
    let bodies: Arc<Vec<DeviceBodies>> = Arc::new(
        messages
            .iter()
            .zip(&records)
            .map(|(device, records)| (myscanner_protocol::routing_key(device[0].device_id), records.clone()))
            .collect(),
    );

    // The same agents over AMQPS, to RabbitMQ's own TLS listener: they learn its address
    // from an API replica that gives it out; the fleet's service consumes as before.
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("broker-ca.pem");
    std::fs::write(&ca_file, myscanner_tests::tls::broker_ca()).unwrap();
    let amqps = replica(&fleet, myscanner_protocol::tls::platform_client_config(), |config| {
        config.broker.device_url =
            config.broker.device_url.replace("amqp://127.0.0.1:5672/", "amqps://127.0.0.1:5671/");
    })
    .await;
    let amqps_link = Link { api_url: amqps.base_url.clone(), ca_file: Some(ca_file) };

    let (mut pg, mut mq, mut e2e, mut e2e_tls, mut memory) = Default::default();
    let (mut ratios, mut tls_ratios) = (vec![], vec![]);
    for _ in 0..rounds {
        postgres_ceiling(&fleet, &rows, 500, &mut pg).await;
        broker_ceiling(&fleet, &bodies, &mut mq).await;
        end_to_end(&fleet, &fleet.link(), &records, &mut e2e, &mut memory).await;
        end_to_end(&fleet, &amqps_link, &records, &mut e2e_tls, &mut Memory::default()).await;
        let last = |phase: &Phase| *phase.rates.last().unwrap();
        ratios.push(format!("{:.0}%", 100.0 * last(&e2e) / last(&pg).min(last(&mq))));
        tls_ratios.push(format!("{:.2}", last(&e2e_tls) / last(&e2e)));
    }
    let (pg_rate, mq_rate, e2e_rate): (f64, f64, f64) = (pg.median(), mq.median(), e2e.median());
    println!(
        "  PostgreSQL-only ceiling (batched insert of the same rows):  {pg_rate:>7.0} rows/s  (rounds: {})",
        pg.rounds()
    );
    println!("    CPU per row: {}", pg.cpu_per_item());
    println!(
        "  broker-only ceiling (published as the agents do, consumed):  {mq_rate:>7.0} msg/s   (rounds: {})",
        mq.rounds()
    );
    println!("    CPU per message: {}", mq.cpu_per_item());
    println!(
        "  end to end (agents → broker → consumer → PostgreSQL):        {e2e_rate:>7.0} msg/s   (rounds: {})",
        e2e.rounds()
    );
    println!("    CPU per measurement: {}", e2e.cpu_per_item());
    println!(
        "    = {:.0}% of the lower ceiling (rounds: {}); target ≥ 60% and ≥ 5000/s",
        100.0 * e2e_rate / pg_rate.min(mq_rate),
        ratios.join(", ")
    );
    let tls_rate: f64 = e2e_tls.median();
    println!(
        "  end to end over AMQPS (RabbitMQ's TLS listener):             {tls_rate:>7.0} msg/s   (rounds: {})",
        e2e_tls.rounds()
    );
    println!("    CPU per measurement: {}", e2e_tls.cpu_per_item());
    println!(
        "    = {:.2} × plain AMQP end to end (rounds: {}); target ≥ 0.9",
        tls_rate / e2e_rate,
        tls_ratios.join(", ")
    );
    println!(
        "  service memory: {:.0} MiB before, peak {:.0} MiB in the first half of a run, {:.0} MiB in the second (VmHWM {:.0} MiB)",
        memory.before,
        memory.first_half,
        memory.second_half,
        fleet.service.peak_rss_mib()
    );

    // Latency under a steady load at half the measured rate, from recording to commit.
    let dirs: Vec<tempfile::TempDir> = (0..devices).map(|_| tempfile::tempdir().unwrap()).collect();
    let agents = start_agents(&fleet, &fleet.link(), &dirs).await;
    let base = sequence_taken(&fleet.db).await;
    let rate = e2e_rate / 2.0;
    let duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut factories: Vec<MeasurementFactory> = fleet
        .devices
        .iter()
        .enumerate()
        .map(|(i, (id, _))| MeasurementFactory::new(*id, fleet.site_id, i % 4 == 3))
        .collect();
    let mut recorded: HashMap<Uuid, ()> = HashMap::new();
    let tick = Duration::from_millis(20);
    let per_tick = ((rate * tick.as_secs_f64()) / devices as f64).max(1.0) as usize;
    while started.elapsed() < duration {
        for (agent, factory) in agents.iter().zip(&mut factories) {
            let now = chrono::Utc::now();
            let batch: Vec<MeasurementV1> = (0..per_tick).map(|_| factory.next(now)).collect();
            recorded.extend(batch.iter().map(|m| (m.measurement_id, ())));
            agent.record(&batch).unwrap();
        }
        tokio::time::sleep(tick).await;
    }
    let expected = recorded.len() as i64;
    while high_water(&fleet.db).await - base < expected {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<Uuid> = recorded.keys().copied().collect();
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM received_at - scanned_at)::float8 * 1000 FROM measurements WHERE measurement_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&fleet.db)
    .await
    .unwrap();
    let achieved = ids.len() as f64 / duration.as_secs_f64();
    println!(
        "  record→commit latency at {achieved:.0} msg/s: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0)
    );
    stop_agents(agents).await;
}
