//! The web dashboard in a real browser: sets up a workgroup as its people would have it (an
//! operator, an admin, a viewer, two sites, two scanners whose agents upload through the
//! broker and keep uploading), then runs the Playwright tests of `web/tests/` in Debian's
//! Chromium against this service, and finally checks that the credential an operator
//! provisioned in the browser works for a real agent.
//!
//! `deploy/scripts/test.sh` installs Chromium and builds the app first; without them this
//! test fails (it never skips).
//!
//! One file of about 400 lines: most of it is the one scene the Playwright tests read, and
//! the checks after it are of the same built app and its generated API types.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::LoadProfile;
use myscanner_protocol::sync::{Collection, Record, ReferenceScan};
use myscanner_tests::{PASSWORD, TestApp, eventually, expect_json, uuid};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const BACKLOG: usize = 160;
const WAIT: Duration = Duration::from_secs(60);
/// Whom customers contact about their subscription (`subscriptions.contact`).
const CONTACT: &str = "subscriptions@myscanner.example";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.exists(),
        "Debian's chromium is missing: deploy/scripts/test.sh installs it (apt-get install chromium)"
    );
    path
}

async fn person(app: &TestApp, manager: &str, workgroup_id: Uuid, email: &str, name: &str, permissions: &[&str]) {
    let body = json!({"email": email, "name": name, "password": PASSWORD, "permissions": permissions});
    let response = app.post(&format!("/api/v1/workgroups/{workgroup_id}/members"), manager, body).await;
    expect_json(response, StatusCode::CREATED).await;
}

async fn site(app: &TestApp, admin: &str, workgroup_id: Uuid, name: &str, zone: &str) -> Uuid {
    let body = json!({"name": name, "time_zone": zone});
    let response = app.post(&format!("/api/v1/workgroups/{workgroup_id}/sites"), admin, body).await;
    uuid(&expect_json(response, StatusCode::CREATED).await["id"])
}

/// A workgroup whose subscription (14 days of grace) ran from `start` to `end`.
async fn subscribed_workgroup(
    app: &TestApp,
    operator: &str,
    name: &str,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
) -> Uuid {
    let group =
        expect_json(app.post("/api/v1/workgroups", operator, json!({"name": name})).await, StatusCode::CREATED).await;
    let workgroup_id = uuid(&group["id"]);
    let terms = json!({"plan": "Fleet 10", "scanners": 10, "period_start": start, "period_end": end, "grace_days": 14});
    let response = app.put(&format!("/api/v1/workgroups/{workgroup_id}/subscription"), operator, terms).await;
    expect_json(response, StatusCode::CREATED).await;
    workgroup_id
}

async fn device(
    app: &TestApp,
    operator: &str,
    workgroup_id: Uuid,
    site_id: Uuid,
    kind: &str,
    name: &str,
) -> (Uuid, String) {
    let body = json!({"site_id": site_id, "kind": kind, "serial": format!("{}-{}", kind.to_uppercase(), &Uuid::new_v4().simple().to_string()[..8]), "name": name});
    let made = expect_json(
        app.post(&format!("/api/v1/workgroups/{workgroup_id}/devices"), operator, body).await,
        StatusCode::CREATED,
    )
    .await;
    (uuid(&made["device"]["id"]), made["credential"]["secret"].as_str().unwrap().to_owned())
}

/// A VNC server of this machine (TigerVNC's Xvnc, from Debian's packages) on a free display
/// and port of loopback, without authentication; stopped when dropped.
struct Xvnc {
    child: std::process::Child,
    address: std::net::SocketAddr,
}

impl Xvnc {
    const WIDTH: u32 = 640;
    const HEIGHT: u32 = 480;

    fn start() -> Xvnc {
        assert!(
            Path::new("/usr/bin/Xvnc").exists(),
            "Xvnc is missing: deploy/scripts/test.sh installs tigervnc-standalone-server"
        );
        let display = (60..200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .expect("a free X display");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("/usr/bin/Xvnc")
            .arg(format!(":{display}"))
            // -wr: a white root window, the known picture the browser must show.
            .args([
                "-wr",
                "-rfbport",
                &port.to_string(),
                "-localhost",
                "-SecurityTypes",
                "None",
                "-nolisten",
                "tcp",
                "-depth",
                "24",
            ])
            .args(["-geometry", &format!("{}x{}", Self::WIDTH, Self::HEIGHT)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Xvnc starts");
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(address).is_err() {
            assert!(std::time::Instant::now() < deadline, "Xvnc did not listen on {address}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Xvnc { child, address }
    }
}

impl Drop for Xvnc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` measurements scanned over the past three days, oldest last.
fn backlog(factory: &mut MeasurementFactory, n: usize) -> Vec<myscanner_protocol::MeasurementV1> {
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    (1..=n).map(|i| factory.next(now - TimeDelta::minutes(27 * i as i64))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_chromium() {
    let root = repository();
    let web = root.join("web");
    let playwright = web.join("node_modules/.bin/playwright");
    assert!(playwright.exists(), "web/node_modules is missing: deploy/scripts/test.sh runs npm ci");
    assert!(web.join("dist/index.html").exists(), "web/dist is not built: deploy/scripts/test.sh builds it");
    let chromium = chromium();

    // Two ports of this machine that answer, one that does not: what the external scan of
    // the scanners' public address (127.0.0.1 here) must find.
    let listeners = [
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let open: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ports = format!("{},{},{closed}", open[0], open[1]);
    let app = TestApp::spawn_with(|c| {
        c.server.web_dir = web.join("dist");
        c.security.scheduler = false;
        c.security.workers = 1;
        c.security.poll_interval_ms = 100;
        c.security.external_ports = ports;
        c.subscriptions.contact = CONTACT.into();
    })
    .await;
    let operator_email = format!("operator-{}@example.com", Uuid::new_v4().simple());
    let operator = app.operator_named(&operator_email, "Olivia Operator").await;

    let name = "Northern Quarries";
    let group =
        expect_json(app.post("/api/v1/workgroups", &operator, json!({"name": name})).await, StatusCode::CREATED).await;
    let workgroup_id = uuid(&group["id"]);
    app.subscribe(&operator, workgroup_id, 5).await;
    let all = ["view_data", "control_devices", "manage_workgroup"];
    person(&app, &operator, workgroup_id, "ada.admin@northern.example", "Ada Admin", &all).await;
    person(&app, &operator, workgroup_id, "victor.viewer@northern.example", "Victor Viewer", &["view_data"]).await;
    let admin = app.login("ada.admin@northern.example", PASSWORD).await;
    let north = site(&app, &admin, workgroup_id, "North Pit", "Australia/Perth").await;
    let south = site(&app, &admin, workgroup_id, "South Quarry", "Europe/London").await;
    let (lvs, lvs_credential) = device(&app, &operator, workgroup_id, north, "lvs", "Loader bay").await;
    let (mps, mps_credential) = device(&app, &operator, workgroup_id, south, "mps", "Haul road").await;
    // A scanner that never connects: its internal scans wait in the queue for it.
    device(&app, &operator, workgroup_id, south, "lvs", "Spare scanner").await;

    // Three more workgroups for the subscription pages, their names after Northern Quarries
    // (the first workgroup an operator lands on). The service's clock is real time here: a
    // period that ended three days ago is in its 14 days of grace, one that ended forty days
    // ago has lapsed, and the third workgroup never had a subscription.
    let now = app.clock.now();
    let in_grace =
        subscribed_workgroup(&app, &operator, "Quartz Ridge", now - TimeDelta::days(60), now - TimeDelta::days(3))
            .await;
    person(&app, &operator, in_grace, "gina.admin@quartz.example", "Gina Admin", &all).await;
    let lapsed =
        subscribed_workgroup(&app, &operator, "Sandstone Works", now - TimeDelta::days(400), now - TimeDelta::days(40))
            .await;
    person(&app, &operator, lapsed, "lars.admin@sandstone.example", "Lars Admin", &all).await;
    let lapsed_admin = app.login("lars.admin@sandstone.example", PASSWORD).await;
    let east = site(&app, &lapsed_admin, lapsed, "East Face", "Europe/Berlin").await;
    device(&app, &operator, lapsed, east, "lvs", "Crusher feed").await;
    let unsubscribed = expect_json(
        app.post("/api/v1/workgroups", &operator, json!({"name": "Tarn Aggregates"})).await,
        StatusCode::CREATED,
    )
    .await;

    // Both scanners upload their backlog through the broker; the LVS keeps uploading.
    let (lvs_dir, mps_dir, new_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The LVS also syncs its site's lists and reference scans, and has a reference scan of its own.
    let mut lvs_config = app.agent_config(&lvs_credential, lvs_dir.path());
    lvs_config.settings = Settings {
        measurement_transfer: true,
        allow_remote_control: false,
        reference_scan_sync: true,
        load_list_sync: true,
    };
    let lvs_agent = Agent::start(lvs_config).await.expect("agent starts");
    let lvs_lists = lvs_agent.sync(Collection::LoadLists).expect("list sync on");
    let heights: Vec<u16> = (0..30 * 48).map(|i| 400 + ((i % 48) as u16 * 7 + (i / 48) as u16 * 11) % 300).collect();
    let reference = Record::ReferenceScan(ReferenceScan {
        truck_id: "T-REF-1".into(),
        truck_name: "CAT 777G empty".into(),
        tare_volume_m3: 1.4,
        profile: LoadProfile::from_heights_mm(30, 48, 200, &heights),
    });
    lvs_agent.sync(Collection::ReferenceScans).expect("reference sync on").put(Uuid::new_v4(), reference).unwrap();
    // The MPS allows remote control of a real VNC server (Xvnc) standing in for its screen.
    let vnc = Xvnc::start();
    let mut mps_config = app.agent_config(&mps_credential, mps_dir.path());
    mps_config.settings = Settings {
        measurement_transfer: true,
        allow_remote_control: true,
        reference_scan_sync: false,
        load_list_sync: false,
    };
    mps_config.remote_control_target = vnc.address;
    let mps_agent = Agent::start(mps_config).await.expect("agent starts");
    let mut lvs_factory = MeasurementFactory::new(lvs, north, false);
    assert!(lvs_agent.record(&backlog(&mut lvs_factory, BACKLOG)).unwrap());
    assert!(mps_agent.record(&backlog(&mut MeasurementFactory::new(mps, south, true), BACKLOG)).unwrap());
    for id in [lvs, mps] {
        eventually(WAIT, "the backlog stored", || async { app.stored(id).await == BACKLOG as i64 }).await;
    }
    let backlog_before = Utc::now();
    let live = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            lvs_agent.record(&[lvs_factory.next(Utc::now())]).unwrap();
        }
    });

    let out = root.join("target/web-tests");
    let screenshots = root.join("target/web-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&screenshots).unwrap();
    let _ = std::fs::remove_file(out.join("provisioned.json"));
    let fixture = json!({
        "baseUrl": app.base_url,
        "chromium": chromium,
        "outDir": out,
        "screenshotDir": screenshots,
        "workgroupId": workgroup_id,
        "workgroupName": name,
        "operator": {"email": operator_email, "password": PASSWORD},
        "admin": {"email": "ada.admin@northern.example", "password": PASSWORD},
        "viewer": {"email": "victor.viewer@northern.example", "password": PASSWORD},
        "liveDeviceId": lvs,
        "mpsDeviceId": mps,
        "siteIds": [north, south],
        "northSiteId": north,
        "backlogBefore": backlog_before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "backlogPerDevice": BACKLOG,
        "openPorts": open,
        "scannedClosedPort": closed,
        "vncGeometry": [Xvnc::WIDTH, Xvnc::HEIGHT],
        "subscriptionContact": CONTACT,
        "inGrace": {
            "workgroupId": in_grace,
            "workgroupName": "Quartz Ridge",
            "admin": {"email": "gina.admin@quartz.example", "password": PASSWORD},
        },
        "lapsed": {
            "workgroupId": lapsed,
            "workgroupName": "Sandstone Works",
            "admin": {"email": "lars.admin@sandstone.example", "password": PASSWORD},
        },
        "unsubscribed": {"workgroupId": unsubscribed["id"], "workgroupName": "Tarn Aggregates"},
    });
    let fixture_path = out.join("fixture.json");
    std::fs::write(&fixture_path, serde_json::to_vec_pretty(&fixture).unwrap()).unwrap();

    // Playwright prints its own report to this test's output.
    let run = std::process::Command::new(&playwright)
        .arg("test")
        .current_dir(&web)
        .env("MYSCANNER_WEB_FIXTURE", &fixture_path)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status();
    let status = tokio::task::spawn_blocking(move || run.expect("playwright runs")).await.unwrap();
    live.abort();
    drop(listeners);
    assert!(status.success(), "the browser tests failed (screenshots in {})", screenshots.display());

    // The list made and edited in the browser reached the running scanner's own copy.
    eventually(WAIT, "the dashboard's list on the scanner", || async {
        lvs_lists.records().iter().any(|(_, record)| {
            matches!(record, Record::LoadList(list) if list.name == "Destinations" && list.items.iter().any(|i| i.label == "Crusher 1"))
        })
    })
    .await;

    // The credential the operator saw once in the browser works for a real agent.
    let provisioned: Value = serde_json::from_slice(&std::fs::read(out.join("provisioned.json")).unwrap()).unwrap();
    let gate = uuid(&provisioned["device_id"]);
    let agent = Agent::start(app.agent_config(provisioned["credential"].as_str().unwrap(), new_dir.path()))
        .await
        .expect("an agent starts with the credential provisioned in the browser");
    assert!(agent.record(&backlog(&mut MeasurementFactory::new(gate, south, false), 3)).unwrap());
    eventually(WAIT, "the new scanner's measurements stored", || async { app.stored(gate).await == 3 }).await;
    mps_agent.stop().await;
    agent.stop().await;
}

/// The dashboard's API types are generated from the OpenAPI document (`npm run types` in
/// `web/`); a change to the document without regenerating them fails here.
#[test]
fn the_dashboards_api_types_match_the_document() {
    let web = repository().join("web");
    let generator = web.join("node_modules/.bin/openapi-typescript");
    assert!(generator.exists(), "web/node_modules is missing: deploy/scripts/test.sh runs npm ci");
    let fresh = std::env::temp_dir().join(format!("myscanner-schema-{}.d.ts", Uuid::new_v4().simple()));
    let status = std::process::Command::new(&generator)
        .args(["../openapi/openapi.json", "-o"])
        .arg(&fresh)
        .current_dir(&web)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openapi-typescript runs");
    assert!(status.success());
    let generated = std::fs::read_to_string(&fresh).unwrap();
    let _ = std::fs::remove_file(&fresh);
    let committed = std::fs::read_to_string(web.join("src/lib/api/schema.d.ts")).unwrap();
    assert!(generated == committed, "web/src/lib/api/schema.d.ts is stale: run `npm run types` in web/");
}

#[tokio::test]
async fn the_service_serves_the_built_app_with_deep_links_and_cache_rules() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::create_dir(dist.path().join("assets")).unwrap();
    std::fs::write(dist.path().join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::write(dist.path().join("assets/index-abc123.js"), "console.log(1)").unwrap();
    let dir = dist.path().to_path_buf();
    let app = TestApp::spawn_with(move |c| c.server.web_dir = dir).await;

    for page in ["/", "/w/5f0c6c9e-0000-4000-8000-000000000000/measurements?order=asc", "/sign-in"] {
        let response = app.client.get(app.url(page)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let headers = response.headers().clone();
        assert_eq!(headers["cache-control"], "no-cache", "{page}: index.html is revalidated");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(response.text().await.unwrap(), "<!doctype html><title>app</title>");
    }
    let asset = app.client.get(app.url("/assets/index-abc123.js")).send().await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(asset.headers()["content-type"].to_str().unwrap().contains("javascript"));

    // A missing asset is a 404, never index.html; an unknown API path keeps its problem.
    let missing = app.client.get(app.url("/assets/gone-000.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["cache-control"], "no-cache");
    let api = app.client.get(app.url("/api/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.headers()["content-type"], "application/problem+json");
    let posted = app.client.post(app.url("/w/anything")).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_built_app_the_service_says_how_to_build_it() {
    let app = TestApp::spawn_with(|c| c.server.web_dir = PathBuf::from("/nonexistent/web/dist")).await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("npm ci &amp;&amp; npm run build") && page.contains("/nonexistent/web/dist"), "{page}");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}
