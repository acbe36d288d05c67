//! The measurements API: filters, keyset pages, one measurement and its profile, the
//! change feed, exports, summaries, rate limits — against a real PostgreSQL.

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
        app.post(
            &format!("/api/v1/workgroups/{}/sites", t.workgroup_id),
            &t.admin_token,
            json!({"name": "South", "time_zone": "Australia/Perth"}),
        )
        .await,
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
    let base = format!("/api/v1/workgroups/{}/measurements", t.workgroup_id);
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

#[tokio::test]
async fn bad_filters_and_cursors_are_400s() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let base = format!("/api/v1/workgroups/{}/measurements", t.workgroup_id);
    let first = expect_json(app.get(&format!("{base}?order=asc&limit=1"), &t.admin_token).await, StatusCode::OK).await;
    assert!(first["next_cursor"].is_null());
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    app.insert_measurements(&[factory.next(Utc::now()), factory.next(Utc::now())]).await;
    let page = expect_json(app.get(&format!("{base}?order=asc&limit=1"), &t.admin_token).await, StatusCode::OK).await;
    let asc_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    for bad in [
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
    ] {
        let response = app.get(&format!("{base}?{bad}"), &t.admin_token).await;
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    // The export checks its filter before its status line: a 400, not a broken 200.
    for bad in ["truck_id=T%00", "limit=0&from=yesterday"] {
        let response = app.get(&format!("{base}/export?{bad}"), &t.admin_token).await;
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    // An empty range is a question with an empty answer, not a malformed one (the document
    // cannot say "from before to", so a client generated from it may well ask).
    for empty in ["from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "min_volume_m3=5&max_volume_m3=2"] {
        let page = expect_json(app.get(&format!("{base}?{empty}"), &t.admin_token).await, StatusCode::OK).await;
        assert_eq!(page["items"], serde_json::json!([]), "{empty}");
    }
    let summary = format!("{base}/summary");
    for bad in [
        "group_by=day",
        "group_by=weekday&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z",
        "group_by=day&from=2020-01-01T00:00:00Z&to=2026-11-02T00:00:00Z",
    ] {
        expect_problem(
            app.get(&format!("{summary}?{bad}"), &t.admin_token).await,
            StatusCode::BAD_REQUEST,
            "invalid-request",
        )
        .await;
    }
    expect_problem(
        app.get(&format!("{base}/export?format=xlsx"), &t.admin_token).await,
        StatusCode::BAD_REQUEST,
        "invalid-request",
    )
    .await;
    expect_problem(
        app.get(&format!("{base}/changes?cursor=%%%"), &t.admin_token).await,
        StatusCode::BAD_REQUEST,
        "invalid-request",
    )
    .await;
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
    let base = format!("/api/v1/workgroups/{}/measurements", t.workgroup_id);

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
    let feed = format!("/api/v1/workgroups/{}/measurements/changes", t.workgroup_id);
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
    let listing =
        walk(&app, &t.api_token, &format!("/api/v1/workgroups/{}/measurements?from={since}", t.workgroup_id)).await;
    assert!(!ids(&listing).contains(&late.measurement_id.to_string()));
}

#[tokio::test]
async fn profiles_as_json_and_binary_agree_and_revalidate() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let m = MeasurementFactory::new(t.device_id, t.site_id, false).next(Utc::now());
    app.insert_measurements(std::slice::from_ref(&m)).await;
    let path =
        format!("/api/v1/workgroups/{}/devices/{}/measurements/{}", t.workgroup_id, t.device_id, m.measurement_id);

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
    let missing = format!(
        "/api/v1/workgroups/{}/devices/{}/measurements/{}/profile",
        t.workgroup_id,
        t.device_id,
        Uuid::now_v7()
    );
    expect_problem(app.get(&missing, &t.api_token).await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn exports_are_complete_and_streamed() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let mut factory = MeasurementFactory::new(t.device_id, t.site_id, false);
    let all: Vec<MeasurementV1> = (0..3000).map(|i| factory.next(base_time() + TimeDelta::seconds(i))).collect();
    app.insert_measurements(&all).await;
    let base = format!("/api/v1/workgroups/{}/measurements/export", t.workgroup_id);
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
async fn summaries_group_in_the_site_time_zone() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (all, site2, mps) = seeded(&app, &operator, &t).await;
    let base = format!("/api/v1/workgroups/{}/measurements/summary", t.workgroup_id);
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

#[tokio::test]
async fn measurements_need_view_data_and_stay_in_their_workgroup() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;
    let m = MeasurementFactory::new(a.device_id, a.site_id, false).next(Utc::now());
    app.insert_measurements(std::slice::from_ref(&m)).await;
    let list = format!("/api/v1/workgroups/{}/measurements", a.workgroup_id);
    let (_, manager_only) = app.member(&a.admin_token, a.workgroup_id, &["manage_workgroup"]).await;
    expect_problem(app.get(&list, &manager_only).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(app.get(&list, &operator).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_problem(app.get(&list, &b.api_token).await, StatusCode::NOT_FOUND, "not-found").await;
    // B's own listing shows none of A's, even when B names A's device.
    let b_list = format!("/api/v1/workgroups/{}/measurements?device_id={}", b.workgroup_id, a.device_id);
    let page = expect_json(app.get(&b_list, &b.api_token).await, StatusCode::OK).await;
    assert_eq!(page["items"], json!([]));
    let one =
        format!("/api/v1/workgroups/{}/devices/{}/measurements/{}", b.workgroup_id, a.device_id, m.measurement_id);
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
    let list = format!("/api/v1/workgroups/{}/measurements", t.workgroup_id);
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
    let path = format!("/api/v1/workgroups/{}/measurements/export", t.workgroup_id);

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
    let response =
        app.get(&format!("/api/v1/workgroups/{}/measurements?order=asc", t.workgroup_id), &t.api_token).await;
    let page = expect_json(response, StatusCode::OK).await;
    let read: Vec<f64> = page["items"].as_array().unwrap().iter().map(|m| m["volume_m3"].as_f64().unwrap()).collect();
    assert_eq!(read.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), volumes.map(f64::to_bits));
}
