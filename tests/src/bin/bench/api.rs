//! `bench.sh api`: the measurements API on a large table — first and deep pages through the
//! API next to the same queries straight from PostgreSQL, one at a time and under
//! concurrent readers — and a full streamed export with the service's memory.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use myscanner_tests::bench::percentile;
use serde_json::Value;
use uuid::Uuid;

use crate::fleet::{fleet, seed};

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

/// Completed calls of `f` a second, with `clients` callers each calling it in a loop for
/// `window`.
async fn throughput<F, Fut>(clients: usize, window: Duration, f: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let callers = (0..clients).map(|_| {
        let f = f.clone();
        tokio::spawn(async move {
            let mut calls = 0u64;
            while started.elapsed() < window {
                f().await;
                calls += 1;
            }
            calls
        })
    });
    let calls: u64 = futures_util::future::join_all(callers).await.into_iter().map(Result::unwrap).sum();
    calls as f64 / started.elapsed().as_secs_f64()
}

fn p50_p99(samples: &mut [f64]) -> (f64, f64) {
    (percentile(samples, 50.0), percentile(samples, 99.0))
}

pub async fn run(total: i64) {
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
    // Timed to the page's last byte, as the raw baseline is timed to its rows: parsing the
    // JSON is the client's work, not the service's (the walk above checked the pages).
    let page_bytes = |cursor: Option<String>| {
        let (http, list, token) = (http.clone(), list.clone(), fleet.token.clone());
        async move {
            let url = match cursor {
                Some(c) => format!("{list}?limit=50&cursor={c}"),
                None => format!("{list}?limit=50"),
            };
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            assert!(!response.bytes().await.unwrap().is_empty());
        }
    };
    let mut first = timed(300, || page_bytes(None)).await;
    let mut deep = timed(300, || page_bytes(deep_cursor.clone())).await;

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
    // What any request costs through HTTP here, with no authentication and no query: a floor
    // under the API's figures that the raw baseline does not stand on.
    let healthz = format!("{}/healthz", fleet.service.base_url);
    let mut floor = timed(300, || {
        let (http, url) = (http.clone(), healthz.clone());
        async move { assert!(http.get(url).send().await.unwrap().status().is_success()) }
    })
    .await;
    let (h50, _) = p50_p99(&mut floor);
    println!(
        "  HTTP floor (GET /healthz):     p50 {h50:.2} ms | first page API − raw − floor: {:.2} ms (authentication, rows into structs, JSON)",
        f50 - rf50 - h50
    );

    // Under load: first pages from many readers at once, through the API and straight from
    // a pool the size of the service's.
    const READERS: usize = 16;
    let window = Duration::from_secs(5);
    let api_page = {
        let (http, url, token) = (http.clone(), format!("{list}?limit=50"), fleet.token.clone());
        move || {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move {
                let response = http.get(url).bearer_auth(token).send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
            }
        }
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(fleet.config.0.database.max_connections)
        .connect_with(myscanner::db::connect_options(fleet.config.0.database.url.expose()).unwrap())
        .await
        .unwrap();
    let raw_page = {
        let (pool, conditions) = (pool.clone(), conditions.clone());
        move || {
            let (pool, conditions) = (pool.clone(), conditions.clone());
            async move {
                let mut sql = sqlx::QueryBuilder::new(format!(
                    "SELECT {} FROM measurements",
                    myscanner::measurements::api::COLUMNS
                ));
                conditions.push_where(&mut sql);
                myscanner::measurements::api::push_page(
                    &mut sql,
                    myscanner::measurements::filter::Order::Desc,
                    None,
                    51,
                );
                assert!(!sql.build().fetch_all(&pool).await.unwrap().is_empty());
            }
        }
    };
    let api_rate = throughput(READERS, window, api_page).await;
    let raw_rate = throughput(READERS, window, raw_page).await;
    println!(
        "  first pages, {READERS} readers at once for {} s: API {api_rate:.0} requests/s | raw PostgreSQL ({} connections) {raw_rate:.0} queries/s | API/raw {:.2}",
        window.as_secs(),
        fleet.config.0.database.max_connections,
        api_rate / raw_rate
    );

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
