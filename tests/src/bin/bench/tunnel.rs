//! `bench.sh tunnel`: one remote session's bulk rate and added round trip through the
//! service and an agent's tunnel, next to direct TCP, plain and over TLS; then the
//! service's memory per idle connected scanner.

use std::time::{Duration, Instant};

use myscanner_tests::bench::{CpuTimes, ServiceProcess, percentile};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::fleet::{Fleet, fleet, tls_replica};

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

/// Holds a tunnel from the device with `credential` to `service` until `stop`.
fn hold_tunnel(service: &ServiceProcess, credential: &str, target: std::net::SocketAddr, stop: &CancellationToken) {
    let api = myscanner_agent::api::Api::new(&service.base_url, credential, service.tls.clone()).unwrap();
    tokio::spawn(myscanner_agent::tunnel::run(api, target, stop.clone()));
}

pub async fn run(agents: usize, mib: usize) {
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
