//! Reference-scan and load-list sync: real agents on one site against the running service.

use std::sync::Arc;
use std::time::Duration;

use myscanner_agent::Agent;
use myscanner_agent::api::Settings;
use myscanner_agent::sync::SyncReplica;
use myscanner_protocol::LoadProfile;
use myscanner_protocol::sync::{Collection, LoadList, LoadListItem, Record, ReferenceScan};
use myscanner_tests::{TcpProxy, Tenant, TestApp, eventually, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const BOTH: Settings = Settings {
    measurement_transfer: false,
    allow_remote_control: false,
    reference_scan_sync: true,
    load_list_sync: true,
};

async fn start(app: &TestApp, api_url: &str, credential: &str, settings: Settings, dir: &tempfile::TempDir) -> Agent {
    let mut config = app.agent_config(credential, dir.path());
    config.api_url = api_url.to_owned();
    config.settings = settings;
    Agent::start(config).await.expect("agent starts")
}

fn lists(agent: &Agent) -> Arc<SyncReplica> {
    agent.sync(Collection::LoadLists).expect("list sync on")
}

fn list(name: &str, codes: &[&str]) -> Record {
    let items = codes
        .iter()
        .enumerate()
        .map(|(i, code)| LoadListItem {
            code: (*code).into(),
            label: format!("{code} label"),
            active: true,
            order: i as i32,
        })
        .collect();
    Record::LoadList(LoadList { name: name.into(), items })
}

fn reference_scan(truck: &str) -> Record {
    let heights: Vec<u16> = (0..24 * 40).map(|i| (i % 97) as u16 * 10).collect();
    Record::ReferenceScan(ReferenceScan {
        truck_id: truck.into(),
        truck_name: format!("CAT 777 {truck}"),
        tare_volume_m3: 1.25,
        profile: LoadProfile::from_heights_mm(24, 40, 250, &heights),
    })
}

async fn holds(replica: &SyncReplica, id: Uuid, expected: Option<&Record>) {
    eventually(Duration::from_secs(10), "the change to arrive", || async { replica.get(id).as_ref() == expected })
        .await;
}

/// Three scanners of the tenant's site, each with its own outbox and sync directory.
async fn site_of_three(app: &TestApp, operator: &str, t: &Tenant) -> Vec<String> {
    let mut credentials = vec![t.device_credential.clone()];
    for _ in 0..2 {
        credentials.push(app.provision(operator, t.workgroup_id, t.site_id, "lvs").await.1);
    }
    credentials
}

#[tokio::test]
async fn edits_reach_every_scanner_and_concurrent_edits_resolve_the_same_everywhere() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let credentials = site_of_three(&app, &operator, &t).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents = vec![];
    for (credential, dir) in credentials.iter().zip(&dirs) {
        agents.push(start(&app, &app.base_url, credential, BOTH, dir).await);
    }
    let (a, b, c) = (lists(&agents[0]), lists(&agents[1]), lists(&agents[2]));

    // An edit on one scanner reaches the others.
    let materials = Uuid::now_v7();
    let first = list("Materials", &["GRAV20", "SAND"]);
    a.put(materials, first.clone()).unwrap();
    holds(&b, materials, Some(&first)).await;
    holds(&c, materials, Some(&first)).await;

    // Two scanners edit the same list at once: one edit wins, on every scanner and in the
    // cloud; the other scanner learns it lost and takes the winner.
    let (from_b, from_c) = (list("Materials", &["GRAV20", "SAND", "B"]), list("Materials", &["GRAV20", "C"]));
    b.put(materials, from_b.clone()).unwrap();
    c.put(materials, from_c.clone()).unwrap();
    let agree = || {
        let seen: Vec<_> = [&a, &b, &c].iter().map(|r| r.get(materials)).collect();
        let won = seen[0] == Some(from_b.clone()) || seen[0] == Some(from_c.clone());
        (seen.iter().all(|s| s == &seen[0]) && won).then(|| seen[0].clone())
    };
    eventually(Duration::from_secs(10), "the three scanners to agree", || async { agree().is_some() }).await;
    let settled = agree().unwrap();
    let path = t.path(&format!("/sites/{}/sync/load-lists", t.site_id));
    let stored = expect_json(app.get(&path, &t.admin_token).await, StatusCode::OK).await;
    assert_eq!(stored["records"].as_array().unwrap().len(), 1);
    assert_eq!(serde_json::from_value::<Record>(stored["records"][0]["record"].clone()).ok(), settled);
    assert!(!stored["records"][0]["changed_by_device"].is_null(), "the dashboard sees which scanner changed it");
    // Page sizes and waits beyond their documented ranges are refused, not clamped.
    for bad in [format!("{path}?limit=0"), format!("{path}?limit=5001")] {
        expect_problem(app.get(&bad, &t.admin_token).await, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    let too_long = app.get("/api/v1/agent/sync/load-lists?wait=26", &t.device_credential).await;
    expect_problem(too_long, StatusCode::BAD_REQUEST, "invalid-request").await;

    // Reference scans travel with their profiles intact.
    let truck = Uuid::now_v7();
    let scan = reference_scan("TRK-12");
    let references = agents[1].sync(Collection::ReferenceScans).unwrap();
    references.put(truck, scan.clone()).unwrap();
    holds(&agents[0].sync(Collection::ReferenceScans).unwrap(), truck, Some(&scan)).await;
    holds(&agents[2].sync(Collection::ReferenceScans).unwrap(), truck, Some(&scan)).await;

    // The dashboard sees when each scanner last synced.
    let status = t.path(&format!("/sites/{}/sync-status", t.site_id));
    let status = expect_json(app.get(&status, &t.admin_token).await, StatusCode::OK).await;
    let pulled = status["devices"].as_array().unwrap().iter().filter(|d| !d["last_pull_at"].is_null()).count();
    assert_eq!(pulled, 6, "three scanners × two collections: {status}");
    for agent in agents {
        agent.stop().await;
    }
}

#[tokio::test]
async fn a_scanner_offline_catches_up_and_its_stale_edits_never_resurrect_a_delete() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let credentials = site_of_three(&app, &operator, &t).await;
    let proxy = TcpProxy::start(app.base_url.trim_start_matches("http://").parse().unwrap()).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(&app, &app.base_url, &credentials[0], BOTH, &dirs[0]).await;
    let b = start(&app, &app.base_url, &credentials[1], BOTH, &dirs[1]).await;
    // The third scanner reaches the cloud through a link the test can cut.
    let c = start(&app, &format!("http://{}", proxy.addr), &credentials[2], BOTH, &dirs[2]).await;
    let (la, lb, lc) = (lists(&a), lists(&b), lists(&c));
    let (doomed, kept) = (Uuid::now_v7(), Uuid::now_v7());
    la.put(doomed, list("Sources", &["PIT1"])).unwrap();
    la.put(kept, list("Customers", &["ACME"])).unwrap();
    holds(&lc, doomed, Some(&list("Sources", &["PIT1"]))).await;
    holds(&lc, kept, Some(&list("Customers", &["ACME"]))).await;

    proxy.cut();
    la.delete(doomed).unwrap();
    la.put(kept, list("Customers", &["ACME", "GLOBEX"])).unwrap();
    holds(&lb, doomed, None).await;
    // Offline, the third scanner still edits the list deleted meanwhile, and adds one.
    lc.put(doomed, list("Sources", &["PIT1", "PIT2"])).unwrap();
    let added = Uuid::now_v7();
    lc.put(added, list("Operators", &["JD"])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.restore();
    // It catches up, its edit of the deleted list loses to the delete, its new list spreads.
    holds(&lc, kept, Some(&list("Customers", &["ACME", "GLOBEX"]))).await;
    holds(&lc, doomed, None).await;
    holds(&la, added, Some(&list("Operators", &["JD"]))).await;
    holds(&lb, added, Some(&list("Operators", &["JD"]))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(la.get(doomed), None, "the delete stands everywhere");
    assert_eq!(lb.get(doomed), None);

    // Restarted, a scanner resumes from its revision with its copy intact.
    b.stop().await;
    la.put(kept, list("Customers", &["ACME", "GLOBEX", "INITECH"])).unwrap();
    let b = start(&app, &app.base_url, &credentials[1], BOTH, &dirs[1]).await;
    let lb = lists(&b);
    assert_eq!(lb.get(added), Some(list("Operators", &["JD"])), "the copy survived the restart");
    holds(&lb, kept, Some(&list("Customers", &["ACME", "GLOBEX", "INITECH"]))).await;
    for agent in [a, b, c] {
        agent.stop().await;
    }
}

/// A site whose first scanner has synced three lists (the first since deleted) and two
/// reference scans.
struct Site {
    app: TestApp,
    operator: String,
    t: Tenant,
    first: Agent,
    lists: Arc<SyncReplica>,
    list_ids: Vec<Uuid>,
    trucks: Vec<Uuid>,
    _dir: tempfile::TempDir,
}

/// Reports `settings` as the scanner with `credential` would at its start, without an agent.
async fn report_settings(app: &TestApp, credential: &str, settings: Settings) {
    let mut settings = json!(settings);
    settings["agent_version"] = json!("test");
    app.put("/api/v1/agent/settings", credential, settings).await;
}

/// The ids of the site's live records of `collection`, as the dashboard lists them, sorted.
async fn in_the_cloud(app: &TestApp, t: &Tenant, collection: &str) -> Vec<Uuid> {
    let path = t.path(&format!("/sites/{}/sync/{collection}", t.site_id));
    let page = expect_json(app.get(&path, &t.admin_token).await, StatusCode::OK).await;
    let mut ids: Vec<Uuid> =
        page["records"].as_array().unwrap().iter().map(|r| myscanner_tests::uuid(&r["id"])).collect();
    ids.sort();
    ids
}

async fn synced_site() -> Site {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let dir = tempfile::tempdir().unwrap();
    let first = start(&app, &app.base_url, &t.device_credential, BOTH, &dir).await;
    let (lists, references) = (self::lists(&first), first.sync(Collection::ReferenceScans).unwrap());
    let list_ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (i, id) in list_ids.iter().enumerate() {
        lists.put(*id, list(&format!("List {i}"), &["X"])).unwrap();
    }
    let trucks: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
    for (i, id) in trucks.iter().enumerate() {
        references.put(*id, reference_scan(&format!("TRK-{i}"))).unwrap();
    }
    lists.delete(list_ids[0]).unwrap();
    let mut live_lists = list_ids[1..].to_vec();
    live_lists.sort();
    eventually(Duration::from_secs(10), "the first scanner's edits in the cloud", || async {
        in_the_cloud(&app, &t, "load-lists").await == live_lists
            && in_the_cloud(&app, &t, "reference-scans").await.len() == 2
    })
    .await;
    Site { app, operator, t, first, lists, list_ids, trucks, _dir: dir }
}

/// A list edited in the dashboard reaches the scanners, marked as the user's; a stale
/// edit, a viewer's and an invalid list are refused, changing nothing.
#[tokio::test]
async fn dashboard_edits_reach_the_scanners_and_bad_ones_are_refused() {
    let Site { app, t, first, lists, .. } = synced_site().await;
    let path = |id: Uuid| t.path(&format!("/sites/{}/sync/load-lists/{id}", t.site_id));
    let by_user = Uuid::now_v7();
    let body = json!({"list": {"name": "Destinations", "items": [{"code": "D1", "label": "Dump 1", "active": true, "order": 0}]}});
    let outcome = expect_json(app.put(&path(by_user), &t.admin_token, body.clone()).await, StatusCode::OK).await;
    assert_eq!(outcome["current"]["changed_by_user"], t.admin_id.to_string());
    holds(&lists, by_user, serde_json::from_value(body["list"].clone()).ok().map(Record::LoadList).as_ref()).await;

    let stale = json!({"list": body["list"], "base_revision": 0});
    expect_problem(app.put(&path(by_user), &t.admin_token, stale).await, StatusCode::CONFLICT, "sync-conflict").await;
    let (_, viewer) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    expect_problem(app.put(&path(by_user), &viewer, body).await, StatusCode::FORBIDDEN, "forbidden").await;
    let duplicate = json!({"list": {"name": "Bad", "items": [
        {"code": "A", "label": "a", "active": true, "order": 0}, {"code": "A", "label": "b", "active": true, "order": 1}]}});
    expect_problem(
        app.put(&path(Uuid::now_v7()), &t.admin_token, duplicate).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    // An invalid edit is refused on the scanner itself, before it is queued.
    assert!(lists.put(Uuid::now_v7(), list("", &["X"])).is_err());
    first.stop().await;
}

/// A push sent again (its answer lost on the way back) is recognised, not refused as stale.
#[tokio::test]
async fn a_push_sent_again_is_recognised() {
    let app = TestApp::spawn().await;
    let t = app.tenant(&app.operator().await, "Acme").await;
    report_settings(&app, &t.device_credential, BOTH).await;
    let edit = json!({"edits": [{"edit_id": Uuid::now_v7(), "id": Uuid::now_v7(), "base_revision": 0,
        "record": {"name": "Resent", "items": []}}]});
    let first = expect_json(
        app.post("/api/v1/agent/sync/load-lists", &t.device_credential, edit.clone()).await,
        StatusCode::OK,
    )
    .await;
    let again =
        expect_json(app.post("/api/v1/agent/sync/load-lists", &t.device_credential, edit).await, StatusCode::OK).await;
    assert_eq!(again["outcomes"][0]["applied"], true);
    assert_eq!(again["outcomes"][0]["current"]["revision"], first["outcomes"][0]["current"]["revision"]);
}

#[tokio::test]
async fn a_new_scanner_restores_everything_live_and_nothing_deleted() {
    let Site { app, operator, t, first, lists, list_ids, trucks, .. } = synced_site().await;
    let (_, fresh) = app.provision(&operator, t.workgroup_id, t.site_id, "mps").await;
    let fresh_dir = tempfile::tempdir().unwrap();
    let n = start(&app, &app.base_url, &fresh, BOTH, &fresh_dir).await;
    let (ln, rn) = (self::lists(&n), n.sync(Collection::ReferenceScans).unwrap());
    holds(&ln, list_ids[2], lists.get(list_ids[2]).as_ref()).await;
    let mut restored: Vec<Uuid> = ln.records().into_iter().map(|(id, _)| id).collect();
    restored.sort();
    assert_eq!(restored, [list_ids[1], list_ids[2]]);
    holds(&rn, trucks[1], Some(&reference_scan("TRK-1"))).await;
    assert_eq!(rn.records().len(), 2);
    for agent in [first, n] {
        agent.stop().await;
    }
}

/// List sync and reference-scan sync are gated independently: a scanner with list sync only
/// has no reference scans, and the cloud refuses them to it.
#[tokio::test]
async fn list_and_reference_scan_sync_are_gated_apart() {
    let Site { app, operator, t, first, lists, list_ids, .. } = synced_site().await;
    let lists_only = Settings { reference_scan_sync: false, ..BOTH };
    let (_, gated) = app.provision(&operator, t.workgroup_id, t.site_id, "lvs").await;
    let gated_dir = tempfile::tempdir().unwrap();
    let g = start(&app, &app.base_url, &gated, lists_only, &gated_dir).await;
    assert!(g.sync(Collection::ReferenceScans).is_none());
    holds(&self::lists(&g), list_ids[1], lists.get(list_ids[1]).as_ref()).await;
    let refused = app.get("/api/v1/agent/sync/reference-scans?wait=0", &gated).await;
    expect_problem(refused, StatusCode::CONFLICT, "sync-disabled").await;
    let push =
        json!({"edits": [{"edit_id": Uuid::now_v7(), "id": Uuid::now_v7(), "base_revision": 0, "record": null}]});
    expect_problem(
        app.post("/api/v1/agent/sync/reference-scans", &gated, push).await,
        StatusCode::CONFLICT,
        "sync-disabled",
    )
    .await;
    for agent in [first, g] {
        agent.stop().await;
    }
}

/// Another site of the workgroup, and another workgroup, see nothing of this site.
#[tokio::test]
async fn other_sites_and_workgroups_see_nothing_of_a_site() {
    let Site { app, operator, t, first, .. } = synced_site().await;
    let other_site = expect_json(
        app.post(&t.path("/sites"), &t.admin_token, json!({"name": "North", "time_zone": "UTC"})).await,
        StatusCode::CREATED,
    )
    .await;
    let (_, north) = app.provision(&operator, t.workgroup_id, myscanner_tests::uuid(&other_site["id"]), "lvs").await;
    let rival = app.tenant(&operator, "Rival").await;
    for credential in [&north, &rival.device_credential] {
        report_settings(&app, credential, BOTH).await;
        let changes: Value =
            expect_json(app.get("/api/v1/agent/sync/load-lists?wait=0", credential).await, StatusCode::OK).await;
        assert!(changes["changes"].as_array().unwrap().is_empty(), "{changes}");
        let snapshot =
            expect_json(app.get("/api/v1/agent/sync/reference-scans/snapshot", credential).await, StatusCode::OK).await;
        assert!(snapshot["records"].as_array().unwrap().is_empty());
    }
    first.stop().await;
}
