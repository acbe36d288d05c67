//! Exports and summaries: what reads many measurements at once — complete, streamed and
//! given up when the client stops reading; grouped by device, day (in the site's time zone),
//! load detail and site.

use std::collections::HashSet;

use chrono::TimeDelta;
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::MeasurementV1;
use myscanner_tests::{TestApp, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::Value;

use super::{base_time, ids, seeded};

#[tokio::test]
async fn exports_are_complete_and_streamed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let all: Vec<MeasurementV1> = (0..3000).map(|i| factory.next(base_time() + TimeDelta::seconds(i))).collect();
    app.insert_measurements(&all).await;
    let base = t.path("/measurements/export");
    let expected: HashSet<String> = all.iter().map(|m| m.measurement_id.to_string()).collect();

    let ndjson = app.get(&base, &t.api_token).await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    assert!(ndjson.headers().get("content-length").is_none(), "streamed, not buffered");
    let text = ndjson.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3000);
    assert_eq!(ids(&lines).into_iter().collect::<HashSet<_>>(), expected);
    assert!(lines.windows(2).all(|w| w[0]["scanned_at"].as_str() <= w[1]["scanned_at"].as_str()), "oldest first");

    let csv = app.get(&format!("{base}?format=csv&to=2026-11-01T00:10:00Z"), &t.api_token).await;
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut rows = text.lines();
    assert!(rows.next().unwrap().starts_with("device_id,measurement_id,"));
    assert_eq!(rows.count(), 600, "the same filters apply");

    let gzip = app
        .request(reqwest::Method::GET, &base, Some(&t.api_token))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    assert!(gzip.bytes().await.unwrap().len() < text.len() * 5, "compressed");
}

#[tokio::test]
async fn a_client_that_stops_reading_gives_its_export_up() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(|config| {
        config.server.max_exports = 1;
        config.server.stalled_stream_secs = 1;
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let all: Vec<MeasurementV1> = (0..20_000).map(|i| factory.next(base_time() + TimeDelta::seconds(i))).collect();
    app.insert_measurements(&all).await;
    let path = t.path("/measurements/export");

    let mut stalled = app.stalled_get(&path, &t.api_token).await;

    // The one export slot is held: another export is shed, saying when to try again.
    let busy = app.get(&path, &t.api_token).await;
    assert!(busy.headers().contains_key("retry-after"));
    expect_problem(busy, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;

    // Once the stalled export is given up, its slot (and database connection) is free.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let response = app.get(&path, &t.api_token).await;
        if response.status() == StatusCode::OK {
            break response.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the stalled export still holds its slot");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(text.lines().count(), 20_000);

    // The abandoned body is broken off, never ended as if complete.
    let mut rest = vec![];
    stalled.read_to_end(&mut rest).await.unwrap_or_default();
    assert!(!rest.ends_with(b"\r\n0\r\n\r\n"), "a given-up export must not look whole");
}

#[tokio::test]
async fn summaries_group_in_the_site_time_zone() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (all, site2, mps) = seeded(&app, &operator, &t).await;
    let base = t.path("/measurements/summary");
    let range = "from=2026-10-01T00:00:00Z&to=2026-12-01T00:00:00Z";

    let by_device =
        expect_json(app.get(&format!("{base}?group_by=device&{range}"), &t.admin_token).await, StatusCode::OK).await;
    let mps_group = by_device["groups"].as_array().unwrap().iter().find(|g| g["key"] == mps.to_string()).unwrap();
    let mps_volume: f64 = all.iter().filter(|m| m.device_id == mps).map(|m| m.volume_m3).sum();
    assert_eq!(mps_group["measurements"], 60);
    assert!((mps_group["volume_m3"].as_f64().unwrap() - mps_volume).abs() < 1e-6);
    assert!(mps_group["payload_t"].as_f64().unwrap() > 0.0);

    // Days in each site's zone: the MPS site is in Perth (UTC+8), the other in London.
    let by_day = expect_json(
        app.get(&format!("{base}?group_by=day&site_id={site2}&{range}"), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    let perth = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
    for m in all.iter().filter(|m| m.device_id == mps) {
        *expected.entry(m.scanned_at.with_timezone(&perth).format("%Y-%m-%d").to_string()).or_default() += 1;
    }
    let actual: std::collections::BTreeMap<String, i64> = by_day["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g["measurements"].as_i64().unwrap()))
        .collect();
    assert_eq!(actual, expected);

    let by_material = expect_json(
        app.get(&format!("{base}?group_by=load_detail&list=material&{range}"), &t.admin_token).await,
        StatusCode::OK,
    )
    .await;
    let keys: Vec<&str> =
        by_material["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["GRAVEL20", "ROCK", "SAND"]);
    let total: i64 =
        by_material["groups"].as_array().unwrap().iter().map(|g| g["measurements"].as_i64().unwrap()).sum();
    assert_eq!(total, 120);
    // Without a list, every list's codes, a measurement counted once per load detail.
    let by_detail =
        expect_json(app.get(&format!("{base}?group_by=load_detail&{range}"), &t.admin_token).await, StatusCode::OK)
            .await;
    let groups = by_detail["groups"].as_array().unwrap();
    let material: Vec<&str> =
        groups.iter().filter_map(|g| g["key"].as_str().and_then(|k| k.strip_prefix("material:"))).collect();
    assert_eq!(material, ["GRAVEL20", "ROCK", "SAND"]);
    let details: usize = all.iter().map(|m| m.load_details.len().max(1)).sum();
    let counted: i64 = groups.iter().map(|g| g["measurements"].as_i64().unwrap()).sum();
    assert_eq!(counted as usize, details);
    let by_site =
        expect_json(app.get(&format!("{base}?group_by=site&{range}"), &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(by_site["groups"].as_array().unwrap().len(), 2);
}
