//! `bench.sh security`: the weekly fan-out, the queue's claim-and-complete rate, how soon a
//! dead worker's job is rescued, and a full port scan of loopback next to nmap's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub async fn run(devices: i64, workers: usize) {
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
