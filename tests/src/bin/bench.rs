//! The benchmark harness: each capability against the real services, next to a baseline
//! measured in the same run.
//!
//!   deploy/scripts/bench.sh ingest [--devices 20] [--measurements 50000]
//!   deploy/scripts/bench.sh api [--measurements 1000000]
//!   deploy/scripts/bench.sh security [--devices 100000] [--workers 8]
//!   deploy/scripts/bench.sh tunnel [--agents 1000] [--mib 512]
//!   deploy/scripts/bench.sh sync [--scanners 50] [--changes 20] [--reference-scans 10000]
//!   deploy/scripts/bench.sh web [--loads 20]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use myscanner::config::Config;
use myscanner::measurements::{store, validate};
use myscanner_agent::Agent;
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::MeasurementV1;
use myscanner_tests::bench::{CpuTimes, ServiceProcess, percentile};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Measurement ingest: agents → RabbitMQ → consumer → PostgreSQL.
    Ingest {
        #[arg(long, default_value_t = 20)]
        devices: usize,
        #[arg(long, default_value_t = 50_000)]
        measurements: usize,
        /// Rounds of the three runs (PostgreSQL alone, the broker alone, end to end),
        /// interleaved so that drift on the machine weighs on all three alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Security Services: weekly fan-out, queue throughput, rescue latency, a full port scan.
    Security {
        #[arg(long, default_value_t = 100_000)]
        devices: i64,
        /// Scan slots of the worker pool.
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// The measurements API on a large table: first and deep pages, exports.
    Api {
        #[arg(long, default_value_t = 1_000_000)]
        measurements: i64,
    },
    /// Sync: propagation of a list change to every scanner of a site, and a new scanner's
    /// restore of a large set of reference scans.
    Sync {
        #[arg(long, default_value_t = 50)]
        scanners: usize,
        #[arg(long, default_value_t = 20)]
        changes: usize,
        #[arg(long, default_value_t = 10_000)]
        reference_scans: i64,
    },
    /// Remote control: one session's bulk throughput and added round trip next to direct
    /// TCP, and the service's memory per idle connected scanner.
    Tunnel {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Bytes sent (and echoed back) through one session, in MiB.
        #[arg(long, default_value_t = 512)]
        mib: usize,
    },
    /// The web dashboard: its first page's JavaScript and CSS, the time to a rendered
    /// measurements table next to the API call it makes, a 512 × 512 profile in 3D.
    Web {
        #[arg(long, default_value_t = 20)]
        loads: usize,
    },
}

#[path = "bench/web.rs"]
mod web;

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Bench::Ingest { devices, measurements, rounds } => ingest(devices, measurements, rounds).await,
        Bench::Api { measurements } => api(measurements).await,
        Bench::Security { devices, workers } => security(devices, workers).await,
        Bench::Tunnel { agents, mib } => tunnel(agents, mib).await,
        Bench::Sync { scanners, changes, reference_scans } => sync(scanners, changes, reference_scans).await,
        Bench::Web { loads } => web::run(loads).await,
    }
}

struct Fleet {
    service: ServiceProcess,
    db: PgPool,
    vhost: String,
    devices: Vec<(Uuid, String)>,
    site_id: Uuid,
    workgroup_id: Uuid,
    /// A member with view_data, signed in.
    token: String,
    /// The service's configuration. Dropped last: the benchmark's database, vhost and
    /// device users go with it.
    config: myscanner_tests::Cleanup,
}

async fn fleet(devices: usize) -> Fleet {
    let mut config = myscanner_tests::test_config().await;
    // Benchmarks measure the service's speed, not its per-scanner limiter: a sync bench's
    // scanners poll once per edit, far faster than any site edits.
    config.server.device_rate_limit_per_minute = 1_000_000;
    config.server.device_rate_limit_burst = 100_000;
    let service = ServiceProcess::start(&config).await;
    let db = myscanner_tests::connect(config.database.url.expose()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", service.base_url);
    myscanner::admin::create_operator(
        &db,
        "bench@example.com",
        "Bench",
        Some("bench-password-123".into()),
        myscanner::admin::Existing::Refuse,
    )
    .await
    .unwrap();
    let login = async |email: &str| -> String {
        let body = json!({"email": email, "password": "bench-password-123"});
        let session: Value =
            http.post(url("/api/v1/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
        session["access_token"].as_str().unwrap().to_owned()
    };
    let token = login("bench@example.com").await;
    let post = async |path: &str, body: Value| -> Value {
        http.post(url(path)).bearer_auth(&token).json(&body).send().await.unwrap().json().await.unwrap()
    };
    let workgroup = post("/api/v1/workgroups", json!({"name": "Bench"})).await;
    let wg = workgroup["id"].as_str().unwrap().to_owned();
    let subscription =
        json!({"plan": "Bench", "scanners": devices, "period_end": chrono::Utc::now() + chrono::Duration::days(365)});
    let response =
        http.put(url(&format!("/api/v1/workgroups/{wg}/subscription"))).bearer_auth(&token).json(&subscription);
    assert!(response.send().await.unwrap().status().is_success(), "the bench workgroup's subscription");
    // The workgroup's own admin, whom the operator creates (an operator never makes
    // themselves a member): the benchmarks read data as this person.
    let admin = json!({"email": "bench-admin@example.com", "name": "Bench admin", "password": "bench-password-123",
        "permissions": ["manage_workgroup", "view_data", "control_devices"]});
    post(&format!("/api/v1/workgroups/{wg}/members"), admin).await;
    let site = post(&format!("/api/v1/workgroups/{wg}/sites"), json!({"name": "Pit", "time_zone": "UTC"})).await;
    let site_id: Uuid = site["id"].as_str().unwrap().parse().unwrap();
    let mut provisioned = vec![];
    for i in 0..devices {
        let kind = if i % 4 == 3 { "mps" } else { "lvs" };
        let device = post(
            &format!("/api/v1/workgroups/{wg}/devices"),
            json!({"site_id": site_id, "kind": kind, "serial": format!("BENCH-{i:04}"), "name": format!("Scanner {i}")}),
        )
        .await;
        provisioned.push((
            device["device"]["id"].as_str().unwrap().parse().unwrap(),
            device["credential"]["secret"].as_str().unwrap().to_owned(),
        ));
    }
    let vhost = config.broker.url.expose().rsplit('/').next().unwrap().to_owned();
    let workgroup_id = wg.parse().unwrap();
    let token = login("bench-admin@example.com").await;
    Fleet {
        service,
        db,
        vhost,
        devices: provisioned,
        site_id,
        workgroup_id,
        token,
        config: myscanner_tests::Cleanup(config),
    }
}

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

/// Where agents find MyScanner: the service (or a replica of it) and the CA they pin.
struct Link {
    api_url: String,
    ca_file: Option<std::path::PathBuf>,
}

impl Fleet {
    /// The fleet's own service, with the broker address it gives (plain AMQP).
    fn link(&self) -> Link {
        Link { api_url: self.service.base_url.clone(), ca_file: None }
    }
}

async fn start_agents(fleet: &Fleet, link: &Link, dirs: &[tempfile::TempDir]) -> Vec<Arc<Agent>> {
    start_agents_with(fleet, link, dirs, Default::default()).await
}

async fn start_agents_with(
    fleet: &Fleet,
    link: &Link,
    dirs: &[tempfile::TempDir],
    settings: myscanner_agent::api::Settings,
) -> Vec<Arc<Agent>> {
    // At once, as the scanners of a fleet start independently of one another.
    let starts = fleet.devices.iter().zip(dirs).map(|((_, credential), dir)| {
        Agent::start(myscanner_agent::config::DeviceConfig {
            credential: credential.clone(),
            api_url: link.api_url.clone(),
            outbox_dir: Some(dir.path().to_path_buf()),
            ca_file: link.ca_file.clone(),
            allow_insecure: false,
            settings,
            internal_scan_allowed: vec![],
            remote_control_target: myscanner_agent::tunnel::DEFAULT_TARGET.parse().unwrap(),
            sync_dir: None,
            serial: None,
            device_id: None,
            cloud_recheck_secs: 600,
        })
    });
    futures_util::future::join_all(starts).await.into_iter().map(|agent| Arc::new(agent.unwrap())).collect()
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

async fn stop_agents(agents: Vec<Arc<Agent>>) {
    for agent in agents {
        if let Ok(agent) = Arc::try_unwrap(agent) {
            agent.stop().await;
        }
    }
}

async fn ingest(devices: usize, total: usize, rounds: usize) {
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

/// Times `n` runs of `f`, in milliseconds.
async fn timed<F, Fut>(n: usize, mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples
}

fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    (percentile(samples, 50.0), percentile(samples, 99.0))
}

/// Measurements seeded in SQL for the reading benchmarks: one every 300 ms over the fleet's
/// devices, newest now; a tenth with a 40 × 25 load profile.
async fn seed(fleet: &Fleet, total: i64) {
    let ids: Vec<Uuid> = fleet.devices.iter().map(|d| d.0).collect();
    // Seeded in SQL: a measurement every 3 s per device, newest now.
    for start in (0..total).step_by(100_000) {
        let end = (start + 100_000).min(total);
        sqlx::query(
            "INSERT INTO measurements (device_id, measurement_id, workgroup_id, site_id, seq, scanned_at, received_at,
                 truck_id, truck_name, reference_scan_id, volume_m3, payload_t, carry_back_m3, load_details, quality_flags, has_profile)
             SELECT ($1::uuid[])[1 + g % cardinality($1::uuid[])], gen_random_uuid(), $2, $3, nextval('measurements_seq'),
                 now() - g * interval '300 ms', now() - g * interval '300 ms' + interval '2 s',
                 'T' || lpad((g % 8)::text, 2, '0'), 'CAT 777G', NULL, 10 + (g % 40), NULL, NULL,
                 jsonb_build_array(jsonb_build_object('list', 'material', 'code', (ARRAY['SAND','ROCK','GRAVEL20'])[1 + g % 3])),
                 CASE WHEN g % 50 = 0 THEN ARRAY['truck_moving'] ELSE '{}' END, g % 10 = 0
             FROM generate_series($4::bigint, $5::bigint - 1) g",
        )
        .bind(&ids)
        .bind(fleet.workgroup_id)
        .bind(fleet.site_id)
        .bind(start)
        .bind(end)
        .execute(&fleet.db)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO load_profiles (device_id, measurement_id, workgroup_id, rows, cols, cell_size_mm, heights)
         SELECT device_id, measurement_id, workgroup_id, 40, 25, 200, decode(repeat(lpad(to_hex(seq % 65536), 4, '0'), 1000), 'hex')
         FROM measurements WHERE has_profile",
    )
    .execute(&fleet.db)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE measurements").execute(&fleet.db).await.unwrap();
    sqlx::query("VACUUM ANALYZE load_profiles").execute(&fleet.db).await.unwrap();
}

async fn api(total: i64) {
    println!("bench api: {total} measurements (a tenth with 3D load profiles)");
    let fleet = fleet(10).await;
    let seeding = Instant::now();
    seed(&fleet, total).await;
    println!("  seeded in {:.0} s", seeding.elapsed().as_secs_f64());

    let http = reqwest::Client::new();
    let list = format!("{}/api/v1/workgroups/{}/measurements", fleet.service.base_url, fleet.workgroup_id);
    let get_page = |cursor: Option<String>, limit: u32| {
        let (http, list, token) = (http.clone(), list.clone(), fleet.token.clone());
        async move {
            let mut url = format!("{list}?limit={limit}");
            if let Some(c) = cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            assert!(page["items"].is_array(), "{page}");
            page
        }
    };
    // Walk half-way down by cursors (pages of 500), then time a page of 50 there.
    let walking = Instant::now();
    let mut cursor = None;
    let mut walked = 0;
    while walked < total / 2 {
        let page = get_page(cursor.clone(), 500).await;
        walked += page["items"].as_array().unwrap().len() as i64;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    println!(
        "  walked {walked} rows by cursor in {:.1} s ({:.0} rows/s)",
        walking.elapsed().as_secs_f64(),
        walked as f64 / walking.elapsed().as_secs_f64()
    );
    let deep_cursor = cursor.clone();
    let mut first = timed(300, || async {
        get_page(None, 50).await;
    })
    .await;
    let mut deep = timed(300, || async {
        get_page(deep_cursor.clone(), 50).await;
    })
    .await;

    // The same queries straight against PostgreSQL, rows fetched the same way.
    let conditions =
        myscanner::measurements::filter::MeasurementFilter::default().conditions(fleet.workgroup_id).unwrap();
    let last: (chrono::DateTime<chrono::Utc>, Uuid, Uuid) = {
        let mut sql = sqlx::QueryBuilder::new("SELECT scanned_at, device_id, measurement_id FROM measurements");
        conditions.push_where(&mut sql);
        myscanner::measurements::api::push_page(&mut sql, myscanner::measurements::filter::Order::Desc, None, walked);
        let rows: Vec<(chrono::DateTime<chrono::Utc>, Uuid, Uuid)> =
            sql.build_query_as().fetch_all(&fleet.db).await.unwrap();
        *rows.last().unwrap()
    };
    let raw = |after: Option<(chrono::DateTime<chrono::Utc>, Uuid, Uuid)>| {
        let (db, conditions) = (fleet.db.clone(), conditions.clone());
        async move {
            let mut sql =
                sqlx::QueryBuilder::new(format!("SELECT {} FROM measurements", myscanner::measurements::api::COLUMNS));
            conditions.push_where(&mut sql);
            myscanner::measurements::api::push_page(&mut sql, myscanner::measurements::filter::Order::Desc, after, 51);
            let rows = sql.build().fetch_all(&db).await.unwrap();
            assert!(!rows.is_empty());
        }
    };
    let mut raw_first = timed(300, || raw(None)).await;
    let mut raw_deep = timed(300, || raw(Some(last))).await;
    let (f50, f99) = p50_p99(&mut first);
    let (d50, d99) = p50_p99(&mut deep);
    let (rf50, rf99) = p50_p99(&mut raw_first);
    let (rd50, rd99) = p50_p99(&mut raw_deep);
    println!(
        "  first page (50 rows):          API p50 {f50:.2} ms p99 {f99:.2} ms | raw PostgreSQL p50 {rf50:.2} ms p99 {rf99:.2} ms | API/raw p50 {:.1}×",
        f50 / rf50
    );
    println!(
        "  page {walked} rows deep:     API p50 {d50:.2} ms p99 {d99:.2} ms | raw PostgreSQL p50 {rd50:.2} ms p99 {rd99:.2} ms | API/raw p50 {:.1}×",
        d50 / rd50
    );
    println!("  deep page / first page (API): p50 {:.2}×, p99 {:.2}× (target ≤ 2×)", d50 / f50, d99 / f99);

    // A full export, streamed; the service's memory before and after.
    let before = fleet.service.peak_rss_mib();
    let exporting = Instant::now();
    let response = http.get(format!("{list}/export?format=ndjson")).bearer_auth(&fleet.token).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let seconds = exporting.elapsed().as_secs_f64();
    assert_eq!(lines as i64, total, "the export is complete");
    let after = fleet.service.peak_rss_mib();
    println!(
        "  full NDJSON export: {lines} rows, {:.0} MiB in {seconds:.1} s = {:.0} rows/s (target ≥ 100,000); service peak memory {before:.0} → {after:.0} MiB (+{:.0} MiB, target < 64)",
        bytes as f64 / 1048576.0,
        lines as f64 / seconds,
        after - before
    );
}

async fn security(devices: i64, workers: usize) {
    use myscanner::security::{external, queue, schedule};
    println!("bench security: {devices} devices with weekly external scans enabled, {workers} workers");
    let db = myscanner_tests::connect(&myscanner_tests::create_database().await).await;
    myscanner::db::migrate(&db).await.unwrap();
    let (workgroup, site) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO workgroups (id, name) VALUES ($1, 'Bench')").bind(workgroup).execute(&db).await.unwrap();
    sqlx::query("INSERT INTO sites (id, workgroup_id, name, time_zone) VALUES ($1, $2, 'Pit', 'UTC')")
        .bind(site)
        .bind(workgroup)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO devices (id, workgroup_id, site_id, kind, serial, name, public_address)
         SELECT gen_random_uuid(), $1, $2, 'lvs', 'B-' || g, 'Scanner ' || g, '127.0.0.1' FROM generate_series(1, $3) g",
    )
    .bind(workgroup)
    .bind(site)
    .bind(devices)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO security_scan_settings (device_id, kind, workgroup_id, enabled) SELECT id, 'external', workgroup_id, true FROM devices")
        .execute(&db)
        .await
        .unwrap();

    // The Saturday fan-out: one statement, idempotent.
    let slot: chrono::DateTime<chrono::Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
    let started = Instant::now();
    let enqueued = schedule::enqueue_due(&db, slot).await.unwrap();
    let fan_out = started.elapsed().as_secs_f64();
    let again = schedule::enqueue_due(&db, slot).await.unwrap();
    println!("  weekly fan-out: {enqueued} jobs in {fan_out:.2} s (target < 5 s); a second run added {again}");

    // Claim and complete no-op jobs with a pool of `workers` slots, as the service's
    // workers do: one claim fills every free slot.
    let window = Duration::from_secs(10);
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(workers));
    let mut running = tokio::task::JoinSet::new();
    let mut done = 0u64;
    while started.elapsed() < window {
        let mut permits = vec![slots.clone().acquire_owned().await.unwrap()];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let lease = Duration::from_secs(60);
        let jobs =
            queue::claim_many(&db, queue::ScanKind::External, None, "bench", lease, permits.len()).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        for (job, permit) in jobs.into_iter().zip(permits) {
            let db = db.clone();
            running.spawn(async move {
                let result = queue::ScanResult::External {
                    target: "127.0.0.1".parse().unwrap(),
                    ports: vec![],
                    ids_suspected: false,
                    ids_reasons: vec![],
                };
                assert!(queue::succeed(&db, &job, &result).await.unwrap());
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {
            done += 1;
        }
    }
    while running.join_next().await.is_some() {
        done += 1;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    println!("  claim and complete (no-op scans, {workers} workers): {rate:.0} jobs/s (target ≥ 2,500)");

    // A worker dies holding a job: how long until the job is back in the queue? The
    // service renews leases every lease/3 and reaps every lease/3; here the lease is 3 s.
    sqlx::query("UPDATE security_scan_jobs SET state = 'succeeded' WHERE state = 'queued'").execute(&db).await.unwrap();
    let device: Uuid = sqlx::query_scalar("SELECT id FROM devices LIMIT 1").fetch_one(&db).await.unwrap();
    sqlx::query("UPDATE security_scan_jobs SET state = 'succeeded' WHERE device_id = $1")
        .bind(device)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(queue::run_now(&db, workgroup, device, queue::ScanKind::External).await.unwrap(), queue::RunNow::Queued);
    let lease = Duration::from_secs(3);
    let _dead = queue::claim(&db, queue::ScanKind::External, None, "doomed", lease).await.unwrap().unwrap();
    let died = Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        if queue::rescue_expired(&db, Duration::ZERO).await.unwrap() > 0 {
            break;
        }
    }
    println!(
        "  rescue after a worker dies: {:.1} s with a {} s lease (target ≤ 60 s; with the default 30 s lease: ≤ 40 s)",
        died.elapsed().as_secs_f64(),
        lease.as_secs()
    );

    // A full connect scan of 127.0.0.1 with a handful of listeners, next to nmap.
    let mut listeners = vec![];
    for _ in 0..5 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    // nmap -T4 sets no rate cap; for a like-for-like run on loopback ours is raised from its
    // default (50,000 probes/s per target) out of the way.
    let mut config = myscanner::config::Config::default().security;
    config.rate_per_sec = 1_000_000;
    let settings = config.scan_settings();
    let started = Instant::now();
    let ours = external::scan("127.0.0.1".parse().unwrap(), &settings, &config.allowed_targets, |_| {}).await.unwrap();
    let ours_secs = started.elapsed().as_secs_f64();
    let our_ports: std::collections::BTreeSet<u16> = ours.open.iter().map(|p| p.port).collect();
    println!(
        "  our scan of 127.0.0.1:1-65535: {ours_secs:.2} s, {} open, IDS suspected: {}",
        our_ports.len(),
        ours.ids_suspected
    );
    let started = Instant::now();
    match std::process::Command::new("nmap").args(["-sT", "-p-", "-T4", "-n", "-Pn", "-oG", "-", "127.0.0.1"]).output()
    {
        Ok(output) if output.status.success() => {
            let nmap_secs = started.elapsed().as_secs_f64();
            let text = String::from_utf8_lossy(&output.stdout);
            let nmap_ports: std::collections::BTreeSet<u16> = text
                .split("Ports: ")
                .nth(1)
                .unwrap_or("")
                .split(", ")
                .filter(|p| p.contains("/open/"))
                .filter_map(|p| p.split('/').next()?.trim().parse().ok())
                .collect();
            println!(
                "  nmap -sT -p- -T4 on the same target: {nmap_secs:.2} s, {} open; ours/nmap time {:.2}× (target ≤ 1×); open sets {}",
                nmap_ports.len(),
                ours_secs / nmap_secs,
                if nmap_ports == our_ports {
                    "identical".to_owned()
                } else {
                    format!("differ: ours {our_ports:?}, nmap {nmap_ports:?}")
                }
            );
        }
        _ => println!("  nmap is not installed: no baseline for the scan (apt-get install nmap)"),
    }
    drop(listeners);
}

/// Bulk transfer through `io`: `total` bytes written in 64 KiB writes while the echo is read
/// back; MB/s of payload (each way).
async fn bulk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: S, total: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rx, mut tx) = tokio::io::split(io);
    let chunk = vec![0x5au8; 64 * 1024];
    let started = Instant::now();
    let send = async {
        let mut sent = 0;
        while sent < total {
            tx.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        tx.flush().await.unwrap();
    };
    let receive = async {
        let mut buffer = vec![0u8; 256 * 1024];
        let mut received = 0;
        while received < total {
            let n = rx.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the echo ended early");
            received += n;
        }
    };
    tokio::join!(send, receive);
    total as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// Round trips of a 64-byte message through `io`, in microseconds.
async fn round_trips<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, n: usize) -> Vec<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let message = [7u8; 64];
    let mut back = [0u8; 64];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        io.write_all(&message).await.unwrap();
        io.flush().await.unwrap();
        io.read_exact(&mut back).await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples
}

/// A remote session through `service` as a byte stream, the way `myscanner remote` carries one.
async fn session_io(
    fleet: &Fleet,
    service: &ServiceProcess,
    device_id: Uuid,
) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    use myscanner_protocol::tunnel::{self, WsIo};
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let url = myscanner_tests::remote::session_url(&service.base_url, fleet.workgroup_id, device_id);
    let ws = myscanner_tests::remote::open(&url, &fleet.token, &service.tls).await.expect("session opens");
    WsIo::new(ws, tunnel::tungstenite_codec(), None, Duration::from_secs(3600)).compat()
}

/// Another process of the fleet's service on its database, without ingest or scans, with
/// `adjust` applied (TLS, another broker address for devices).
async fn replica(fleet: &Fleet, tls: Arc<rustls::ClientConfig>, adjust: impl FnOnce(&mut Config)) -> ServiceProcess {
    let mut config = fleet.config.0.clone();
    config.ingest.enabled = false;
    config.security.scheduler = false;
    config.security.workers = 0;
    adjust(&mut config);
    ServiceProcess::start_trusting(&config, tls).await
}

/// The fleet's service again, serving HTTPS and WSS with a certificate from a CA made for
/// the run (kept in `dir`).
async fn tls_replica(fleet: &Fleet, dir: &std::path::Path) -> ServiceProcess {
    let ca = myscanner_tests::tls::TestCa::new();
    let (cert_file, key_file) = ca.issue(&["127.0.0.1"]).write(dir, "service");
    replica(fleet, ca.client_config(), |config| {
        config.server.tls = Some(myscanner::config::TlsConfig { cert_file, key_file, reload_secs: 10 });
    })
    .await
}

/// Holds a tunnel from the device with `credential` to `service` until `stop`.
fn hold_tunnel(service: &ServiceProcess, credential: &str, target: std::net::SocketAddr, stop: &CancellationToken) {
    let api = myscanner_agent::api::Api::new(&service.base_url, credential, service.tls.clone()).unwrap();
    tokio::spawn(myscanner_agent::tunnel::run(api, target, stop.clone()));
}

async fn tunnel(agents: usize, mib: usize) {
    println!("bench tunnel: one session through the service and an agent's tunnel to an echo server, vs direct TCP,");
    println!(
        "              plain (ws:// both ways) and as production runs it (wss:// both ways); then {agents} idle agents"
    );
    let fleet = fleet(2).await;
    let dir = tempfile::tempdir().unwrap();
    let secure = tls_replica(&fleet, dir.path()).await;
    let echo = myscanner_tests::remote::echo_server().await;
    let stop = CancellationToken::new();
    let paths = [
        ("plain (ws://)", &fleet.service, fleet.devices[0].clone()),
        ("TLS (wss://)", &secure, fleet.devices[1].clone()),
    ];
    for (_, service, (_, credential)) in &paths {
        let settings = json!({"measurement_transfer": false, "allow_remote_control": true,
            "reference_scan_sync": false, "load_list_sync": false, "agent_version": "bench"});
        let http = reqwest::Client::builder().use_preconfigured_tls((*service.tls).clone()).build().unwrap();
        let url = format!("{}/api/v1/agent/settings", service.base_url);
        http.put(&url).bearer_auth(credential).json(&settings).send().await.unwrap().error_for_status().unwrap();
        hold_tunnel(service, credential, echo, &stop);
    }
    let online = async |n: i64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM device_tunnels").fetch_one(&fleet.db).await.unwrap();
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {count} of {n} tunnels connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    online(2).await;

    let total = mib * 1024 * 1024;
    // CPU of every process on the machine per MB carried each way (all share two cores).
    let cpu_per_mb = |cpu: CpuTimes, rate: f64| {
        let seconds = total as f64 / 1e6 / rate;
        format!(
            "{:.2} ms CPU per MB, {:.2} cores busy",
            cpu.total() * 1e3 / (total as f64 / 1e6),
            cpu.total() / seconds
        )
    };
    let cpu = CpuTimes::now(fleet.service.pid());
    let direct = bulk(tokio::net::TcpStream::connect(echo).await.unwrap(), total).await;
    let used = CpuTimes::now(fleet.service.pid()) - cpu;
    println!("  bulk, {mib} MiB each way at once:");
    println!(
        "    direct loopback TCP:                    {direct:8.0} MB/s             ({})",
        cpu_per_mb(used, direct)
    );
    let mut rates = vec![];
    for (name, service, (device_id, _)) in &paths {
        let session = session_io(&fleet, service, *device_id).await;
        let cpu = CpuTimes::now(service.pid());
        let rate = bulk(session, total).await;
        let used = CpuTimes::now(service.pid()) - cpu;
        println!(
            "    one session, {name:<14}           {rate:8.0} MB/s = {:.2} × direct ({})",
            rate / direct,
            cpu_per_mb(used, rate)
        );
        rates.push(rate);
    }
    println!(
        "    TLS costs {:.0}% of the plain session's rate; target for TLS ≥ 200 MB/s and ≥ 0.5 × direct",
        100.0 * (1.0 - rates[1] / rates[0])
    );
    let mut direct_rtt = round_trips(tokio::net::TcpStream::connect(echo).await.unwrap(), 5000).await;
    let (d50, d99) = (percentile(&mut direct_rtt, 50.0), percentile(&mut direct_rtt, 99.0));
    println!("  round trip of a 64-byte message (5000 each):");
    println!("    direct loopback TCP:                    p50 {d50:7.0} µs   p99 {d99:7.0} µs");
    for (name, service, (device_id, _)) in &paths {
        let mut rtt = round_trips(session_io(&fleet, service, *device_id).await, 5000).await;
        let (s50, s99) = (percentile(&mut rtt, 50.0), percentile(&mut rtt, 99.0));
        println!(
            "    one session, {name:<14}           p50 {s50:7.0} µs   p99 {s99:7.0} µs; added p50 {:5.0} µs, p99 {:5.0} µs (target p99 < 1000 µs)",
            s50 - d50,
            s99 - d99
        );
    }

    // Idle scanners, on each service in turn: credentials made directly in the database
    // (the API would make a broker user for each, which this does not measure).
    for (name, service, _) in &paths {
        let credentials = idle_devices(&fleet, agents - 1, name).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = service.rss_mib();
        let connected: i64 =
            sqlx::query_scalar("SELECT count(*) FROM device_tunnels").fetch_one(&fleet.db).await.unwrap();
        for credential in credentials {
            hold_tunnel(service, &credential, echo, &stop);
        }
        online(connected + agents as i64 - 1).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = service.rss_mib();
        let per_agent_kib = (after - before) * 1024.0 / (agents - 1) as f64;
        println!(
            "  {} idle agents connected, {name}: service memory {before:.0} → {after:.0} MiB: {per_agent_kib:.1} KiB per idle connected scanner (target ≤ 32 KiB)",
            agents - 1
        );
    }
    stop.cancel();
}

/// `n` more devices of the fleet's site with remote control on, made directly in the
/// database; their credentials.
async fn idle_devices(fleet: &Fleet, n: usize, batch: &str) -> Vec<String> {
    let mut credentials = vec![];
    for i in 0..n {
        let (id, issued) = (Uuid::now_v7(), myscanner::auth::secret::issue(myscanner::auth::secret::DEVICE_PREFIX));
        sqlx::query(
            "INSERT INTO devices (id, workgroup_id, site_id, kind, serial, name, allow_remote_control)
             VALUES ($1, $2, $3, 'lvs', $4, $4, true)",
        )
        .bind(id)
        .bind(fleet.workgroup_id)
        .bind(fleet.site_id)
        .bind(format!("IDLE-{batch}-{i:05}"))
        .execute(&fleet.db)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO device_credentials (id, workgroup_id, device_id, secret_hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(issued.id)
        .bind(fleet.workgroup_id)
        .bind(id)
        .bind(&issued.hash)
        .execute(&fleet.db)
        .await
        .unwrap();
        credentials.push(issued.token);
    }
    credentials
}

async fn sync(scanners: usize, changes: usize, reference_scans: i64) {
    use myscanner_protocol::sync::Collection;
    println!("bench sync: {scanners} scanners on one site with list sync; {changes} list edits in the dashboard;");
    println!("            then a new scanner restores {reference_scans} reference scans");
    let mut fleet = fleet(scanners + 1).await;
    let newcomer = fleet.devices.pop().unwrap();
    let dirs: Vec<_> = (0..scanners).map(|_| tempfile::tempdir().unwrap()).collect();
    let lists_only = myscanner_agent::api::Settings {
        measurement_transfer: false,
        allow_remote_control: false,
        reference_scan_sync: false,
        load_list_sync: true,
    };
    let agents = start_agents_with(&fleet, &fleet.link(), &dirs, lists_only).await;
    let replicas: Vec<_> = agents.iter().map(|a| a.sync(Collection::LoadLists).unwrap()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await; // every scanner restored and waiting

    // Baseline: PostgreSQL's own NOTIFY → LISTEN delivery, the mechanism under the long polls.
    let mut listener = sqlx::postgres::PgListener::connect_with(&fleet.db).await.unwrap();
    listener.listen("bench_baseline").await.unwrap();
    let mut baseline = vec![];
    for _ in 0..200 {
        let started = Instant::now();
        sqlx::query("SELECT pg_notify('bench_baseline', 'x')").execute(&fleet.db).await.unwrap();
        listener.recv().await.unwrap();
        baseline.push(started.elapsed().as_secs_f64() * 1e3);
    }

    let http = reqwest::Client::new();
    let list = Uuid::now_v7();
    let mut samples = vec![];
    for i in 0..changes {
        let waiting: Vec<_> = replicas.iter().map(|r| r.revision()).collect();
        let started = Instant::now();
        let body = json!({"list": {"name": "Materials", "items": [
            {"code": format!("M{i}"), "label": format!("Material {i}"), "active": true, "order": 0}]}});
        let url = format!(
            "{}/api/v1/workgroups/{}/sites/{}/sync/load-lists/{list}",
            fleet.service.base_url, fleet.workgroup_id, fleet.site_id
        );
        let outcome: Value =
            http.put(url).bearer_auth(&fleet.token).json(&body).send().await.unwrap().json().await.unwrap();
        let revision = outcome["current"]["revision"].as_i64().expect("the edit applied");
        let arrivals = waiting.into_iter().map(|mut watch| async move {
            watch.wait_for(|r| *r >= revision).await.unwrap();
            started.elapsed().as_secs_f64() * 1e3
        });
        samples.extend(futures_util::future::join_all(arrivals).await);
    }
    let (p50, p95) = (percentile(&mut samples, 50.0), percentile(&mut samples, 95.0));
    let (b50, b95) = (percentile(&mut baseline, 50.0), percentile(&mut baseline, 95.0));
    println!("  propagation of a list edit to all {scanners} scanners ({} arrivals):", samples.len());
    println!("    PostgreSQL NOTIFY → LISTEN alone:        p50 {b50:7.2} ms   p95 {b95:7.2} ms");
    println!("    dashboard edit → every scanner's copy:   p50 {p50:7.2} ms   p95 {p95:7.2} ms (target p95 < 2000 ms)");

    // A site with many reference scans (40 × 60 profiles), made directly in the database.
    sqlx::query(
        "INSERT INTO sync_records (site_id, collection, id, workgroup_id, revision, data, heights)
         SELECT $1, 'reference-scans', gen_random_uuid(), $2, 1000 + g,
                jsonb_build_object('truck_id', 'TRK-' || g, 'truck_name', 'Truck ' || g, 'tare_volume_m3', 1.5,
                                   'profile', jsonb_build_object('rows', 40, 'cols', 60, 'cell_size_mm', 250)),
                convert_to(repeat(md5(g::text), 150), 'UTF8')
         FROM generate_series(1, $3) g",
    )
    .bind(fleet.site_id)
    .bind(fleet.workgroup_id)
    .bind(reference_scans)
    .execute(&fleet.db)
    .await
    .unwrap();
    sqlx::query("UPDATE site_sync_revisions SET revision = revision + 1000 + $2 WHERE site_id = $1")
        .bind(fleet.site_id)
        .bind(reference_scans)
        .execute(&fleet.db)
        .await
        .unwrap();
    let started = Instant::now();
    let rows: Vec<(Uuid, serde_json::Value, Vec<u8>)> = sqlx::query_as(
        "SELECT id, data, heights FROM sync_records WHERE site_id = $1 AND collection = 'reference-scans' ORDER BY id",
    )
    .bind(fleet.site_id)
    .fetch_all(&fleet.db)
    .await
    .unwrap();
    let raw = started.elapsed().as_secs_f64();
    assert_eq!(rows.len() as i64, reference_scans);
    drop(rows);

    let dir = tempfile::tempdir().unwrap();
    let restoring = Fleet { devices: vec![newcomer], ..fleet };
    let started = Instant::now();
    let settings = myscanner_agent::api::Settings { reference_scan_sync: true, load_list_sync: false, ..lists_only };
    let agent = start_agents_with(&restoring, &restoring.link(), std::slice::from_ref(&dir), settings).await.remove(0);
    let references = agent.sync(Collection::ReferenceScans).unwrap();
    let mut revision = references.revision();
    revision.wait_for(|r| *r >= 1000 + reference_scans).await.unwrap();
    let restore = started.elapsed().as_secs_f64();
    assert_eq!(references.records().len() as i64, reference_scans);
    println!("  restore of {reference_scans} reference scans by a new scanner:");
    println!("    PostgreSQL alone (one SELECT of the rows):  {raw:6.2} s");
    println!(
        "    new scanner, start → complete local copy:   {restore:6.2} s = {:.1} × PostgreSQL alone (target < 5 s)",
        restore / raw
    );
}
