//! The measurements API: filters, keyset pages, one measurement and its profile, the
//! change feed, access and rate limits — against a real PostgreSQL. What reads many
//! measurements at once (exports, summaries) is in `measurements/bulk.rs`.

mod bulk;

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::{LoadDetail, MeasurementV1};
use myscanner_tests::{Tenant, TestApp, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

/// A varied, known set: two sites, LVS and MPS, trucks, details, flags, volumes, times.
async fn seeded(app: &TestApp, operator: &str, t: &Tenant) -> (Vec<MeasurementV1>, Uuid, Uuid) {
    let site2 = expect_json(
        app.post(&t.path("/sites"), &t.admin_token, json!({"name": "South", "time_zone": "Australia/Perth"})).await,
        StatusCode::CREATED,
    )
    .await;
    let site2: Uuid = site2["id"].as_str().unwrap().parse().unwrap();
    let (mps, _) = app.provision(operator, t.workgroup_id, site2, "mps").await;
    let mut all = vec![];
    for (device, site, is_mps) in [(t.device_id, t.site_id, false), (mps, site2, true)] {
        let mut factory = MeasurementFactory::new(device, site, is_mps);
        for i in 0..60 {
            let mut m = factory.next(base_time() + TimeDelta::minutes(i * 37));
            m.truck.truck_id = format!("T{:02}", i % 5);
            m.volume_m3 = 10.0 + (i % 20) as f64;
            m.quality_flags = if i % 7 == 0 { vec!["truck_moving".into()] } else { vec![] };
            m.load_details = vec![
                LoadDetail {
                    list: "material".into(),
                    code: ["SAND", "ROCK", "GRAVEL20"][i as usize % 3].into(),
                    label: None,
                },
                LoadDetail { list: "destination".into(), code: ["A", "B"][i as usize % 2].into(), label: None },
            ];
            all.push(m);
        }
    }
    app.insert_measurements(&all).await;
    (all, site2, mps)
}

/// Every id a listing yields, walking `next_cursor` to the end.
async fn walk(app: &TestApp, token: &str, path_and_query: &str) -> Vec<Value> {
    let mut items = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path_and_query.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path_and_query}{sep}limit=17&cursor={c}"),
            None => format!("{path_and_query}{sep}limit=17"),
        };
        let page = expect_json(app.get(&url, token).await, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|m| m["measurement_id"].as_str().unwrap().to_owned()).collect()
}

/// Which of the known measurements a filter should select.
type Predicate<'a> = Box<dyn Fn(&MeasurementV1) -> bool + 'a>;

#[tokio::test]
async fn filters_and_their_combinations() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (all, site2, mps) = seeded(&app, &operator, &t).await;
    let base = t.path("/measurements");
    let from = base_time() + TimeDelta::hours(10);
    let to = base_time() + TimeDelta::hours(30);
    let rfc = |t: DateTime<Utc>| t.to_rfc3339().replace('+', "%2B");
    let has =
        |m: &MeasurementV1, list: &str, code: &str| m.load_details.iter().any(|d| d.list == list && d.code == code);

    let cases: Vec<(String, Predicate)> = vec![
        (String::new(), Box::new(|_| true)),
        (format!("site_id={site2}"), Box::new(move |m| m.device_id == mps)),
        (format!("device_id={}", t.device_id), Box::new(|m| m.device_id == t.device_id)),
        (format!("from={}&to={}", rfc(from), rfc(to)), Box::new(move |m| m.scanned_at >= from && m.scanned_at < to)),
        ("truck_id=T03".into(), Box::new(|m| m.truck.truck_id == "T03")),
        ("min_volume_m3=15&max_volume_m3=20".into(), Box::new(|m| (15.0..=20.0).contains(&m.volume_m3))),
        ("quality_flags=truck_moving".into(), Box::new(|m| m.quality_flags.contains(&"truck_moving".to_owned()))),
        ("load_detail=material:ROCK".into(), Box::new(move |m| has(m, "material", "ROCK"))),
        (
            "load_detail=material:ROCK,destination:B".into(),
            Box::new(move |m| has(m, "material", "ROCK") && has(m, "destination", "B")),
        ),
        (
            format!("site_id={site2}&from={}&min_volume_m3=12&load_detail=destination:A", rfc(from)),
            Box::new(move |m| {
                m.device_id == mps && m.scanned_at >= from && m.volume_m3 >= 12.0 && has(m, "destination", "A")
            }),
        ),
    ];
    let reference_scan = all[3].truck.reference_scan_id.unwrap();
    let mut cases = cases;
    cases.push((
        format!("reference_scan_id={reference_scan}"),
        Box::new(move |m| m.truck.reference_scan_id == Some(reference_scan)),
    ));

    for (query, predicate) in &cases {
        for order in ["desc", "asc"] {
            let items = walk(&app, &t.admin_token, &format!("{base}?order={order}&{query}")).await;
            let mut expected: Vec<&MeasurementV1> = all.iter().filter(|m| predicate(m)).collect();
            expected.sort_by_key(|m| (m.scanned_at, m.device_id, m.measurement_id));
            if order == "desc" {
                expected.reverse();
            }
            let expected: Vec<String> = expected.iter().map(|m| m.measurement_id.to_string()).collect();
            assert!(!expected.is_empty(), "the case `{query}` selects something");
            assert_eq!(ids(&items), expected, "filter `{query}` order {order}");
        }
    }
    // Fields as stored.
    let one = &walk(&app, &t.api_token, &format!("{base}?device_id={mps}&truck_id=T00")).await[0];
    let sent = all.iter().find(|m| m.measurement_id.to_string() == one["measurement_id"]).unwrap();
    assert_eq!(one["payload_t"], json!(sent.payload_t));
    assert_eq!(one["truck"]["reference_scan_id"], json!(sent.truck.reference_scan_id));
    assert_eq!(one["has_profile"], true);
}

/// Every malformed question is a 400 (`invalid-request`): on the list, and on the export,
/// the summary and the change feed beside it.
#[tokio::test]
async fn bad_filters_and_cursors_are_400s() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let base = t.path("/measurements");
    let first = expect_json(app.get(&format!("{base}?order=asc&limit=1"), &t.admin_token).await, StatusCode::OK).await;
    assert!(first["next_cursor"].is_null());
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    app.insert_measurements(&[factory.next(Utc::now()), factory.next(Utc::now())]).await;
    let page = expect_json(app.get(&format!("{base}?order=asc&limit=1"), &t.admin_token).await, StatusCode::OK).await;
    let asc_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let mut bad: Vec<String> = [
        "from=yesterday".to_owned(),
        "device_id=not-a-uuid".to_owned(),
        "load_detail=material".to_owned(),
        "min_volume_m3=-1".to_owned(),
        "order=sideways".to_owned(),
        "quality_flags=,".to_owned(),
        "truck_id=T%00".to_owned(),
        "cursor=bm90LWEtY3Vyc29y".to_owned(),
        format!("order=desc&cursor={asc_cursor}"),
        "limit=0".to_owned(),
        // Given empty is not left out: the document's types and formats refuse "".
        "site_id=".to_owned(),
        "truck_id=".to_owned(),
        "cursor=".to_owned(),
    ]
    .iter()
    .map(|query| format!("{base}?{query}"))
    .collect();
    // The export checks its filter before its status line: a 400, not a broken 200.
    bad.extend(["truck_id=T%00", "limit=0&from=yesterday", "format=xlsx"].map(|q| format!("{base}/export?{q}")));
    bad.extend(
        [
            "group_by=day",
            "group_by=weekday&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z",
            "group_by=day&from=2020-01-01T00:00:00Z&to=2026-11-02T00:00:00Z",
        ]
        .map(|q| format!("{base}/summary?{q}")),
    );
    bad.push(format!("{base}/changes?cursor=%%%"));
    for url in bad {
        expect_problem(app.get(&url, &t.admin_token).await, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
}

/// An empty range is a question with an empty answer, not a malformed one (the document
/// cannot say "from before to", so a client generated from it may well ask).
#[tokio::test]
async fn an_empty_range_is_an_empty_page() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    app.insert_measurements(&[factory.next(base_time()), factory.next(base_time() + TimeDelta::hours(12))]).await;
    for empty in ["from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "min_volume_m3=5&max_volume_m3=2"] {
        let page =
            expect_json(app.get(&t.path(&format!("/measurements?{empty}")), &t.admin_token).await, StatusCode::OK)
                .await;
        assert_eq!(page["items"], json!([]), "{empty}");
    }
}

#[tokio::test]
async fn walking_pages_while_measurements_arrive_sees_each_exactly_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let existing: Vec<MeasurementV1> =
        (0..300).map(|i| factory.next(base_time() + TimeDelta::seconds(i * 13))).collect();
    app.insert_measurements(&existing).await;
    let base = t.path("/measurements");

    for order in ["desc", "asc"] {
        // Meanwhile, measurements keep arriving: new ones, and late ones scanned in the
        // middle of the range being walked.
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let db_app = &app;
        let inserter = async {
            let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
            let mut i = 0i64;
            loop {
                let late = factory.next(base_time() + TimeDelta::seconds(1950 + i));
                let new = factory.next(Utc::now());
                db_app.insert_measurements(&[late, new]).await;
                i += 1;
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
            }
        };
        let walker = async {
            let items = walk(&app, &t.admin_token, &format!("{base}?order={order}")).await;
            let _ = stop.send(true);
            items
        };
        let (items, ()) = tokio::join!(walker, inserter);
        let seen = ids(&items);
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no measurement repeats ({order})");
        for m in &existing {
            assert!(unique.contains(&m.measurement_id.to_string()), "{} was skipped ({order})", m.measurement_id);
        }
    }
}

#[tokio::test]
async fn the_change_feed_delivers_late_uploads() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let feed = t.path("/measurements/changes");
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let recent: Vec<MeasurementV1> = (0..30).map(|i| factory.next(Utc::now() - TimeDelta::minutes(30 - i))).collect();
    app.insert_measurements(&recent).await;

    // An integration polls to the end.
    let mut cursor: Option<String> = None;
    let mut seen = vec![];
    loop {
        let url = match &cursor {
            Some(c) => format!("{feed}?limit=7&cursor={c}"),
            None => format!("{feed}?limit=7"),
        };
        let page = expect_json(app.get(&url, &t.api_token).await, StatusCode::OK).await;
        seen.extend(ids(page["items"].as_array().unwrap()));
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(seen.len(), 30);
    let cursor = cursor.unwrap();
    let idle = expect_json(app.get(&format!("{feed}?cursor={cursor}"), &t.api_token).await, StatusCode::OK).await;
    assert_eq!((idle["items"].as_array().unwrap().len(), idle["next_cursor"].as_str()), (0, Some(cursor.as_str())));

    // A scanner that was offline for three days uploads what it measured then.
    let late = factory.next(Utc::now() - TimeDelta::days(3));
    app.insert_measurements(std::slice::from_ref(&late)).await;
    let next = expect_json(app.get(&format!("{feed}?cursor={cursor}"), &t.api_token).await, StatusCode::OK).await;
    assert_eq!(ids(next["items"].as_array().unwrap()), [late.measurement_id.to_string()], "the late upload comes next");
    // …whereas a listing of the last day by scan time never shows it.
    let since = (Utc::now() - TimeDelta::days(1)).to_rfc3339().replace('+', "%2B");
    let listing = walk(&app, &t.api_token, &t.path(&format!("/measurements?from={since}"))).await;
    assert!(!ids(&listing).contains(&late.measurement_id.to_string()));
}

#[tokio::test]
async fn profiles_as_json_and_binary_agree_and_revalidate() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let m = MeasurementFactory::new(t.device_id, t.site_id, false).next(Utc::now());
    app.insert_measurements(std::slice::from_ref(&m)).await;
    let path = t.path(&format!("/devices/{}/measurements/{}", t.device_id, m.measurement_id));

    let one = app.get(&path, &t.api_token).await;
    let etag = one.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(expect_json(one, StatusCode::OK).await["volume_m3"], json!(m.volume_m3));
    let again = app
        .request(reqwest::Method::GET, &path, Some(&t.api_token))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let json_response = app.get(&format!("{path}/profile"), &t.api_token).await;
    let json_etag = json_response.headers()["etag"].to_str().unwrap().to_owned();
    let profile = expect_json(json_response, StatusCode::OK).await;
    let binary = app
        .request(reqwest::Method::GET, &format!("{path}/profile"), Some(&t.api_token))
        .header("accept", "application/vnd.myscanner.load-profile")
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), StatusCode::OK);
    assert_eq!(binary.headers()["content-type"], "application/vnd.myscanner.load-profile");
    let (rows, cols) = (
        binary.headers()["profile-rows"].to_str().unwrap().parse::<usize>().unwrap(),
        binary.headers()["profile-cols"].to_str().unwrap().parse::<usize>().unwrap(),
    );
    let binary_etag = binary.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(binary_etag, json_etag, "each representation has its own tag");
    let bytes = binary.bytes().await.unwrap();
    let from_binary = myscanner_protocol::profile::heights_mm(&bytes);
    let from_json: Vec<u16> = profile["heights_mm"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|h| h.as_u64().unwrap() as u16))
        .collect();
    assert_eq!((profile["rows"].as_u64().unwrap() as usize, profile["cols"].as_u64().unwrap() as usize), (rows, cols));
    assert_eq!(from_json, from_binary, "JSON and binary hold the same heights");
    assert_eq!(bytes.to_vec(), m.profile.unwrap().decode().unwrap(), "…as the scanner sent them");
    for (accept, tag) in [("application/json", &json_etag), ("application/vnd.myscanner.load-profile", &binary_etag)] {
        let cached = app
            .request(reqwest::Method::GET, &format!("{path}/profile"), Some(&t.api_token))
            .header("accept", accept)
            .header("if-none-match", tag.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{accept}");
    }
    let missing = t.path(&format!("/devices/{}/measurements/{}/profile", t.device_id, Uuid::now_v7()));
    expect_problem(app.get(&missing, &t.api_token).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn measurements_need_view_data_and_stay_in_their_workgroup() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;
    let m = MeasurementFactory::new(a.device_id, a.site_id, false).next(Utc::now());
    app.insert_measurements(std::slice::from_ref(&m)).await;
    let list = a.path("/measurements");
    let (_, manager_only) = app.member(&a.admin_token, a.workgroup_id, &["manage_workgroup"]).await;
    expect_problem(app.get(&list, &manager_only).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(app.get(&list, &operator).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(app.get(&list, &b.api_token).await, StatusCode::NOT_FOUND, "not-found").await;
    // B's own listing shows none of A's, even when B names A's device.
    let b_list = b.path(&format!("/measurements?device_id={}", a.device_id));
    let page = expect_json(app.get(&b_list, &b.api_token).await, StatusCode::OK).await;
    assert_eq!(page["items"], json!([]));
    let one = b.path(&format!("/devices/{}/measurements/{}", a.device_id, m.measurement_id));
    expect_problem(app.get(&one, &b.admin_token).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn callers_are_rate_limited() {
    let app = TestApp::spawn_with(|c| {
        c.server.rate_limit_per_minute = 60;
        c.server.rate_limit_burst = 5;
    })
    .await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let list = t.path("/measurements");
    let mut statuses = vec![];
    for _ in 0..8 {
        statuses.push(app.get(&list, &t.api_token).await.status());
    }
    assert!(statuses[..5].iter().all(|s| s.is_success()), "{statuses:?}");
    let limited = app.get(&list, &t.api_token).await;
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    expect_problem(limited, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
}

#[tokio::test]
async fn volumes_come_back_to_the_last_digit() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    // Doubles whose shortest round-trip text needs all 17 digits.
    let volumes = [506.67974700771765, 0.1 + 0.2, 123.45678901234567, 5e-324];
    let sent: Vec<MeasurementV1> = volumes
        .iter()
        .enumerate()
        .map(|(i, &volume)| MeasurementV1 {
            volume_m3: volume,
            ..factory.next(base_time() + TimeDelta::seconds(i as i64))
        })
        .collect();
    app.insert_measurements(&sent).await;
    let response = app.get(&t.path("/measurements?order=asc"), &t.api_token).await;
    let page = expect_json(response, StatusCode::OK).await;
    let read: Vec<f64> = page["items"].as_array().unwrap().iter().map(|m| m["volume_m3"].as_f64().unwrap()).collect();
    assert_eq!(read.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), volumes.map(f64::to_bits));
}
