//! Customer-integration API tokens: read-only, one workgroup, revocable, hashed.

use myscanner_tests::{TestApp, expect_json, expect_problem, uuid};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn api_tokens_read_their_workgroup_only_and_never_write() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let b = app.tenant(&operator, "Bolt").await;
    let wg = a.workgroup_id;

    let sites =
        expect_json(app.get(&format!("/api/v1/workgroups/{wg}/sites"), &a.api_token).await, StatusCode::OK).await;
    assert_eq!(uuid(&sites["items"][0]["id"]), a.site_id);
    let devices =
        expect_json(app.get(&format!("/api/v1/workgroups/{wg}/devices"), &a.api_token).await, StatusCode::OK).await;
    assert_eq!(uuid(&devices["items"][0]["id"]), a.device_id);
    let workgroups = expect_json(app.get("/api/v1/workgroups", &a.api_token).await, StatusCode::OK).await;
    assert_eq!(workgroups["items"].as_array().unwrap().len(), 1, "only its own workgroup");

    // Read-only: every change is refused, with a reason.
    let create = app
        .post(&format!("/api/v1/workgroups/{wg}/sites"), &a.api_token, json!({"name": "X", "time_zone": "UTC"}))
        .await;
    expect_problem(create, StatusCode::FORBIDDEN, "read-only-token").await;
    let rename = app.patch(&format!("/api/v1/workgroups/{wg}"), &a.api_token, json!({"name": "X"})).await;
    expect_problem(rename, StatusCode::FORBIDDEN, "read-only-token").await;
    // Nor does it read what needs more than view_data.
    let members = app.get(&format!("/api/v1/workgroups/{wg}/members"), &a.api_token).await;
    expect_problem(members, StatusCode::FORBIDDEN, "forbidden").await;
    // Another workgroup does not exist for it.
    let foreign = app.get(&format!("/api/v1/workgroups/{}/sites", b.workgroup_id), &a.api_token).await;
    expect_problem(foreign, StatusCode::NOT_FOUND, "not-found").await;
    // It is not a user session.
    expect_problem(app.get("/api/v1/me", &a.api_token).await, StatusCode::FORBIDDEN, "read-only-token").await;
}

#[tokio::test]
async fn revoked_api_tokens_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let wg = a.workgroup_id;
    let sites = format!("/api/v1/workgroups/{wg}/sites");
    assert_eq!(app.get(&sites, &a.api_token).await.status(), StatusCode::OK);

    let revoke = app.delete(&format!("/api/v1/workgroups/{wg}/api-tokens/{}", a.api_token_id), &a.admin_token).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    expect_problem(app.get(&sites, &a.api_token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let listed =
        expect_json(app.get(&format!("/api/v1/workgroups/{wg}/api-tokens"), &a.admin_token).await, StatusCode::OK)
            .await;
    let token = &listed["items"][0];
    assert!(token["revoked_at"].is_string());
    assert!(token["last_used_at"].is_string(), "use is recorded");
    assert!(token.get("secret").is_none() && !listed.to_string().contains(&a.api_token), "secrets are shown once only");

    // Only a SHA-256 of the secret is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_tokens WHERE id = $1")
        .bind(a.api_token_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    // (The secret is base64url: it may hold `_`, so it is found by the token's layout, and
    // compared whole: a piece of a character or two could turn up in any 32 bytes.)
    let (_, secret) = myscanner::auth::secret::parse("myst", &a.api_token).expect("a token of the documented shape");
    assert_eq!(stored, myscanner::auth::secret::hash(secret), "the SHA-256 of the secret");
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "not the secret itself");

    // A made-up token of the right shape is refused too.
    let forged = format!("myst_{}_{}", a.api_token_id.simple(), "A".repeat(43));
    expect_problem(app.get(&sites, &forged).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
