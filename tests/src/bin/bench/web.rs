//! `bench.sh web`: the dashboard as a browser gets it. A fleet with seeded measurements (one
//! of them with a 512 × 512 load profile), then `web/bench/web.mjs` in Debian's Chromium:
//! the first page's JavaScript and CSS (gzip), navigation → measurements table rendered
//! p50 next to the duration of the API call the page makes (same loads), and the 3D viewer
//! on the large profile next to an ordinary one.

use std::path::Path;

use serde_json::json;
use uuid::Uuid;

const SIDE: usize = 512;

/// A heap over a 512 × 512 grid (20 mm cells, a 10 m tray), empty along the edges.
fn heap() -> Vec<u8> {
    let mut heights = Vec::with_capacity(SIDE * SIDE * 2);
    let centre = SIDE as f64 / 2.0;
    for row in 0..SIDE {
        for col in 0..SIDE {
            let (dy, dx) = ((row as f64 - centre) / centre, (col as f64 - centre) / centre);
            let r2 = dx * dx + dy * dy;
            let ripple = ((row as f64 / 9.0).sin() * (col as f64 / 13.0).cos() + 1.0) * 40.0;
            let mm = if r2 < 0.9 { (1.0 - r2 / 0.9) * 1800.0 + ripple } else { 0.0 };
            heights.extend_from_slice(&(mm as u16).to_le_bytes());
        }
    }
    heights
}

pub async fn run(loads: usize) {
    println!("bench web: {loads} loads of the measurements page in headless Chromium");
    let fleet = crate::fleet::fleet(4).await;
    crate::fleet::seed(&fleet, 20_000).await;
    // Two profiled measurements: the newest keeps its 40 × 25 profile, the next gets 512 × 512.
    let profiled: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT device_id, measurement_id FROM measurements WHERE has_profile ORDER BY scanned_at DESC LIMIT 2",
    )
    .fetch_all(&fleet.db)
    .await
    .unwrap();
    let (small, large) = (profiled[0], profiled[1]);
    sqlx::query(
        "UPDATE load_profiles SET rows = $3, cols = $3, cell_size_mm = 20, heights = $4
         WHERE device_id = $1 AND measurement_id = $2",
    )
    .bind(large.0)
    .bind(large.1)
    .bind(SIDE as i32)
    .bind(heap())
    .execute(&fleet.db)
    .await
    .unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = root.join("target/web-bench");
    std::fs::create_dir_all(&out).unwrap();
    let fixture = out.join("fixture.json");
    let body = json!({
        "baseUrl": fleet.service.base_url,
        "chromium": "/usr/bin/chromium",
        "dist": root.join("web/dist"),
        "email": "bench-admin@example.com",
        "password": "bench-password-123",
        "workgroupId": fleet.workgroup_id,
        "small": {"device": small.0, "measurement": small.1},
        "large": {"device": large.0, "measurement": large.1},
        "loads": loads,
    });
    std::fs::write(&fixture, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
    let status = std::process::Command::new("node")
        .arg("bench/web.mjs")
        .arg(&fixture)
        .current_dir(root.join("web"))
        .status()
        .expect("node runs");
    assert!(status.success(), "the browser part of the benchmark failed");
}
