//! What the benchmarks share: a fleet — the service in a process of its own (so its memory
//! and CPU can be read) with a subscribed workgroup, a site and provisioned scanners — its
//! agents, replicas of the service, and measurements seeded in SQL for reading.

use std::sync::Arc;

use myscanner::config::Config;
use myscanner_agent::Agent;
use myscanner_tests::bench::ServiceProcess;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub struct Fleet {
    pub service: ServiceProcess,
    pub db: PgPool,
    pub vhost: String,
    pub devices: Vec<(Uuid, String)>,
    pub site_id: Uuid,
    pub workgroup_id: Uuid,
    /// A member with view_data, signed in.
    pub token: String,
    /// The service's configuration. Dropped last: the benchmark's database, vhost and
    /// device users go with it.
    pub config: myscanner_tests::Cleanup,
}

pub async fn fleet(devices: usize) -> Fleet {
    let mut config = myscanner_tests::test_config().await;
    // Benchmarks measure the service's speed, not its per-scanner limiter: a sync bench's
    // scanners poll once per edit, far faster than any site edits.
    config.server.device_rate_limit_per_minute = 1_000_000;
    config.server.device_rate_limit_burst = 100_000;
    // Nor people's: the API bench's reader is one person making thousands of requests.
    config.server.rate_limit_per_minute = 1_000_000;
    config.server.rate_limit_burst = 100_000;
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

/// Where agents find MyScanner: the service (or a replica of it) and the CA they pin.
pub struct Link {
    pub api_url: String,
    pub ca_file: Option<std::path::PathBuf>,
}

impl Fleet {
    /// The fleet's own service, with the broker address it gives (plain AMQP).
    pub fn link(&self) -> Link {
        Link { api_url: self.service.base_url.clone(), ca_file: None }
    }
}

pub async fn start_agents(fleet: &Fleet, link: &Link, dirs: &[tempfile::TempDir]) -> Vec<Arc<Agent>> {
    start_agents_with(fleet, link, dirs, Default::default()).await
}

pub async fn start_agents_with(
    fleet: &Fleet,
    link: &Link,
    dirs: &[tempfile::TempDir],
    settings: myscanner_agent::api::Settings,
) -> Vec<Arc<Agent>> {
    // At once, as the scanners of a fleet start independently of one another.
    let starts = fleet.devices.iter().zip(dirs).map(|((_, credential), dir)| {
        Agent::start(myscanner_agent::config::DeviceConfig {
            ca_file: link.ca_file.clone(),
            settings,
            ..myscanner_tests::agent_config(&link.api_url, credential, dir.path())
        })
    });
    futures_util::future::join_all(starts).await.into_iter().map(|agent| Arc::new(agent.unwrap())).collect()
}

pub async fn stop_agents(agents: Vec<Arc<Agent>>) {
    for agent in agents {
        if let Ok(agent) = Arc::try_unwrap(agent) {
            agent.stop().await;
        }
    }
}

/// Another process of the fleet's service on its database, without ingest or scans, with
/// `adjust` applied (TLS, another broker address for devices).
pub async fn replica(
    fleet: &Fleet,
    tls: Arc<rustls::ClientConfig>,
    adjust: impl FnOnce(&mut Config),
) -> ServiceProcess {
    let mut config = fleet.config.0.clone();
    config.ingest.enabled = false;
    config.security.scheduler = false;
    config.security.workers = 0;
    adjust(&mut config);
    ServiceProcess::start_trusting(&config, tls).await
}

/// The fleet's service again, serving HTTPS and WSS with a certificate from a CA made for
/// the run (kept in `dir`).
pub async fn tls_replica(fleet: &Fleet, dir: &std::path::Path) -> ServiceProcess {
    let ca = myscanner_tests::tls::TestCa::new();
    let (cert_file, key_file) = ca.issue(&["127.0.0.1"]).write(dir, "service");
    replica(fleet, ca.client_config(), |config| {
        config.server.tls = Some(myscanner::config::TlsConfig { cert_file, key_file, reload_secs: 10 });
    })
    .await
}

/// Measurements seeded in SQL for the reading benchmarks: one every 300 ms over the fleet's
/// devices, newest now; a tenth with a 40 × 25 load profile.
pub async fn seed(fleet: &Fleet, total: i64) {
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
