//! `bench.sh sync`: how fast a list edit in the dashboard reaches every scanner of a site
//! (next to PostgreSQL's NOTIFY → LISTEN alone), and a new scanner's restore of many
//! reference scans (next to one SELECT of the rows).

use std::time::{Duration, Instant};

use myscanner_tests::bench::percentile;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fleet::{Fleet, fleet, start_agents_with};

pub async fn run(scanners: usize, changes: usize, reference_scans: i64) {
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
