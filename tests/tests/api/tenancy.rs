//! Tenant isolation, checked against every route of the OpenAPI document: a second
//! workgroup's admin (holding every permission there) and its API token probe each operation
//! with the first workgroup's ids. They must get 404 where the path names a foreign id,
//! see none of the first workgroup's ids anywhere, and change none of its rows.

use myscanner_tests::{Tenant, TestApp, expect_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Every row the victim workgroup owns, as JSON, in a stable order.
async fn snapshot(db: &PgPool, t: &Tenant) -> Vec<Value> {
    let queries = [
        "SELECT to_jsonb(x) FROM workgroups x WHERE id = $1",
        "SELECT to_jsonb(x) FROM sites x WHERE workgroup_id = $1 ORDER BY id",
        "SELECT to_jsonb(x) FROM devices x WHERE workgroup_id = $1 ORDER BY id",
        "SELECT to_jsonb(x) FROM memberships x WHERE workgroup_id = $1 ORDER BY user_id",
        "SELECT to_jsonb(x) FROM api_tokens x WHERE workgroup_id = $1 ORDER BY id",
        "SELECT to_jsonb(x) FROM device_credentials x WHERE workgroup_id = $1 ORDER BY id",
        "SELECT to_jsonb(x) FROM users x WHERE id IN (SELECT user_id FROM memberships WHERE workgroup_id = $1) ORDER BY id",
        "SELECT to_jsonb(x) FROM measurements x WHERE workgroup_id = $1 ORDER BY seq",
        "SELECT to_jsonb(x) - 'heights' FROM load_profiles x WHERE workgroup_id = $1 ORDER BY measurement_id",
        "SELECT to_jsonb(x) FROM remote_sessions x WHERE workgroup_id = $1 ORDER BY id",
        "SELECT to_jsonb(x) FROM sync_records x WHERE workgroup_id = $1 ORDER BY id",
    ];
    let mut rows = vec![];
    for query in queries {
        rows.extend(sqlx::query_scalar::<_, Value>(query).bind(t.workgroup_id).fetch_all(db).await.unwrap());
    }
    rows
}

/// A body that satisfies the operation's request schema, so that the probe gets past
/// validation to the access check. A new field name must be taught here.
pub(crate) fn body_for(spec: &Value, operation: &Value, victim: &Tenant) -> Option<Value> {
    let schema_ref = operation.pointer("/requestBody/content/application~1json/schema/$ref")?.as_str()?;
    let name = schema_ref.rsplit('/').next().unwrap();
    let mut body = json!({});
    for field in properties(spec, &spec["components"]["schemas"][name]) {
        body[field] = match field.as_str() {
            "name" => json!("Probe"),
            "time_zone" => json!("UTC"),
            "email" => json!(format!("probe-{}@example.com", Uuid::new_v4().simple())),
            "password" | "current_password" | "new_password" => json!("probe-password-123"),
            "permissions" => json!(["view_data", "control_devices", "manage_workgroup"]),
            "site_id" => json!(victim.site_id),
            "kind" => json!("lvs"),
            "serial" => json!(format!("PROBE-{}", &Uuid::new_v4().simple().to_string()[..8])),
            "agent_version" => json!("9.9.9"),
            "measurement_transfer" | "allow_remote_control" | "reference_scan_sync" | "load_list_sync" => json!(true),
            "enabled" | "all_devices" => json!(true),
            "device_ids" => json!([victim.device_id]),
            "query" => json!("Test"),
            "kinds" => json!(["internal", "external"]),
            "attempt" => json!(1),
            "progress" => json!(0.5),
            "hosts" => json!([]),
            "error" => json!(null),
            "list" => json!({"name": "Probe", "items": []}),
            "base_revision" => json!(0),
            "edits" => json!([]),
            "plan" => json!("Probe"),
            "scanners" => json!(1),
            "trial" => json!(false),
            "period_start" => json!(null),
            "period_end" => json!("2099-01-01T00:00:00Z"),
            "grace_days" => json!(14),
            "subscription" => json!(null),
            other => panic!("teach the tenancy walker a value for request field `{other}` ({name})"),
        };
    }
    Some(body)
}

/// A schema's property names, through `$ref`s and `allOf` (flattened structs).
fn properties(spec: &Value, schema: &Value) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        return properties(spec, &spec["components"]["schemas"][reference.rsplit('/').next().unwrap()]);
    }
    let mut names: Vec<String> =
        schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(spec, part));
    }
    names
}

pub(crate) fn fill_path(path: &str, victim: &Tenant, measurement_id: Uuid, session_id: Uuid) -> String {
    let mut filled = path.to_owned();
    for (param, id) in [
        ("measurement_id", measurement_id),
        ("session_id", session_id),
        ("list_id", session_id),
        ("job_id", measurement_id),
        ("workgroup_id", victim.workgroup_id),
        ("site_id", victim.site_id),
        ("device_id", victim.device_id),
        ("user_id", victim.admin_id),
        ("token_id", victim.api_token_id),
    ] {
        filled = filled.replace(&format!("{{{param}}}"), &id.to_string());
    }
    filled = filled.replace("{kind}", "external").replace("{collection}", "load-lists");
    assert!(!filled.contains('{'), "teach the tenancy walker the parameters of {path}");
    filled
}

/// Values for an operation's required query parameters, so that the probe gets past
/// parsing to the access check. A new required parameter must be taught here.
pub(crate) fn required_query(operation: &Value) -> String {
    let mut pairs = vec![];
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        // Long polls answer at once.
        if parameter["in"] == "query" && parameter["name"] == "wait" {
            pairs.push("wait=0".to_owned());
        }
        if parameter["in"] == "query" && parameter["required"] == true {
            let name = parameter["name"].as_str().unwrap();
            let value = match name {
                "group_by" => "device",
                "from" => "2026-11-01T00:00:00Z",
                "to" => "2026-11-02T00:00:00Z",
                other => panic!("teach the tenancy walker a value for query parameter `{other}`"),
            };
            pairs.push(format!("{name}={value}"));
        }
    }
    if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) }
}

#[tokio::test]
async fn no_route_reaches_another_workgroup() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let victim = app.tenant(&operator, "Victim").await;
    let attacker = app.tenant(&operator, "Attacker").await;
    let measurement = myscanner_agent::simulate::MeasurementFactory::new(victim.device_id, victim.site_id, false)
        .next(chrono::Utc::now());
    app.insert_measurements(std::slice::from_ref(&measurement)).await;
    // An active remote session of the victim's, for the audit routes to be probed with
    // (its heartbeat in the future, so no sweep ends it while the walker runs).
    let session_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO remote_sessions (id, workgroup_id, device_id, user_id, replica_id, heartbeat_at)
         VALUES ($1, $2, $3, $4, $1, now() + interval '1 hour')",
    )
    .bind(session_id)
    .bind(victim.workgroup_id)
    .bind(victim.device_id)
    .bind(victim.admin_id)
    .execute(&app.db)
    .await
    .unwrap();
    // A load list of the victim's site (with the session's id, so one id serves both).
    sqlx::query(
        "INSERT INTO sync_records (site_id, collection, id, workgroup_id, revision, data)
         VALUES ($1, 'load-lists', $2, $3, 1, '{\"name\": \"Materials\", \"items\": []}')",
    )
    .bind(victim.site_id)
    .bind(session_id)
    .bind(victim.workgroup_id)
    .execute(&app.db)
    .await
    .unwrap();
    let spec = expect_json(app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    let victim_ids: Vec<String> =
        [victim.workgroup_id, victim.site_id, victim.device_id, victim.admin_id, victim.api_token_id]
            .iter()
            .map(Uuid::to_string)
            .collect();
    let before = snapshot(&app.db, &victim).await;

    let mut probed = 0;
    let mut failures = vec![];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .map(|s| s.iter().flat_map(|r| r.as_object().unwrap().keys().map(String::as_str)).collect())
                .unwrap_or_default();
            let mut credentials = vec![];
            if schemes.contains(&"user_jwt") {
                credentials.push(("attacker admin", attacker.admin_token.as_str()));
            }
            if schemes.contains(&"api_token") {
                credentials.push(("attacker API token", attacker.api_token.as_str()));
            }
            if schemes.contains(&"device_credential") {
                credentials.push(("attacker device", attacker.device_credential.as_str()));
            }
            for (who, credential) in credentials {
                let method: Method = method.to_uppercase().parse().unwrap();
                let url = format!(
                    "{}{}",
                    fill_path(path, &victim, measurement.measurement_id, session_id),
                    required_query(operation)
                );
                let mut request = app.request(method.clone(), &url, Some(credential));
                if let Some(body) = body_for(&spec, operation, &victim) {
                    request = request.json(&body);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                probed += 1;
                let leaked = victim_ids.iter().any(|id| text.contains(id.as_str()));
                let foreign_path = path.contains("{workgroup_id}");
                // A read-only token is refused on writes before anything is looked up.
                let expected_refusal = status == StatusCode::NOT_FOUND
                    || (who == "attacker API token" && status == StatusCode::FORBIDDEN && method != Method::GET);
                if leaked || (foreign_path && !expected_refusal) {
                    failures.push(format!("{who}: {method} {path} -> {status}: {text}"));
                }
            }
        }
    }
    assert!(probed >= 30, "the walker probed only {probed} operations");
    assert!(failures.is_empty(), "tenant isolation violated:\n{}", failures.join("\n"));
    assert_eq!(snapshot(&app.db, &victim).await, before, "the victim's rows changed");
}
