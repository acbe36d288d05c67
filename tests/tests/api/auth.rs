//! Signing in, session tokens and their failure modes, throttling.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use myscanner_tests::{PASSWORD, TestApp, expect_json, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/me", token).await.status()
}

#[tokio::test]
async fn login_gives_a_token_for_me() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let me = app.me(&tenant.admin_token).await;
    assert_eq!(me["id"], tenant.admin_id.to_string());
    assert_eq!(me["is_operator"], false);
    assert_eq!(me["memberships"][0]["workgroup_id"], tenant.workgroup_id.to_string());
    assert_eq!(me["memberships"][0]["permissions"], json!(["view_data", "control_devices", "manage_workgroup"]));
    assert_eq!(app.me(&operator).await["is_operator"], true);
}

#[tokio::test]
async fn wrong_password_and_unknown_account_fail_alike() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let me = app.me(&tenant.admin_token).await;
    let email = me["email"].as_str().unwrap();

    let wrong = expect_problem(
        app.login_response(email, "not the password at all").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let unknown = expect_problem(
        app.login_response("nobody@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong, unknown, "the answer must not tell which accounts exist");
    // E-mail addresses match whatever their case.
    app.login(&email.to_uppercase(), PASSWORD).await;
}

/// The claims of a session token of `user` as the service issues them, with `overrides`.
fn claims(app: &TestApp, user: uuid::Uuid, overrides: Value) -> Value {
    let (auth, now) = (&app.config.auth, chrono::Utc::now().timestamp());
    let mut claims =
        json!({"sub": user, "iss": auth.jwt_issuer, "aud": auth.jwt_audience, "iat": now, "exp": now + 600});
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn sign(alg: Algorithm, key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let secret = app.config.auth.jwt_secret.expose().as_bytes();
    let now = chrono::Utc::now().timestamp();
    let claims = |overrides: Value| claims(&app, tenant.admin_id, overrides);

    let good = sign(Algorithm::HS256, secret, &claims(json!({})));
    assert_eq!(me_status(&app, &good).await, StatusCode::OK, "the control token works");

    let refused = [
        ("expired", sign(Algorithm::HS256, secret, &claims(json!({"iat": now - 7200, "exp": now - 3600})))),
        ("wrong audience", sign(Algorithm::HS256, secret, &claims(json!({"aud": "someone-else"})))),
        ("wrong issuer", sign(Algorithm::HS256, secret, &claims(json!({"iss": "evil"})))),
        (
            "no expiry",
            sign(Algorithm::HS256, secret, &{
                let mut c = claims(json!({}));
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("other key", sign(Algorithm::HS256, b"a-different-secret-of-sufficient-length", &claims(json!({})))),
        ("other algorithm", sign(Algorithm::HS512, secret, &claims(json!({})))),
        ("alg none", {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
            format!("{header}.{payload}.")
        }),
        ("tampered payload", {
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(claims(json!({"sub": uuid::Uuid::now_v7()})).to_string());
            parts.join(".")
        }),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in refused {
        let response = app.get("/api/v1/me", &token).await;
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
        expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

/// No credential, or not a bearer one, is never anonymous access.
#[tokio::test]
async fn requests_without_a_bearer_token_are_refused() {
    let app = TestApp::spawn().await;
    let anonymous = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let basic = app.client.get(app.url("/api/v1/me")).header("authorization", "Basic YTpi").send().await.unwrap();
    expect_problem(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_token_of_an_account_that_no_longer_exists_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let secret = app.config.auth.jwt_secret.expose().as_bytes();
    let good = sign(Algorithm::HS256, secret, &claims(&app, tenant.admin_id, json!({})));
    assert_eq!(me_status(&app, &good).await, StatusCode::OK);
    sqlx::query("DELETE FROM users WHERE id = $1").bind(tenant.admin_id).execute(&app.db).await.unwrap();
    myscanner_tests::past_remembered_callers().await;
    assert_eq!(me_status(&app, &good).await, StatusCode::UNAUTHORIZED);
}

/// A service allowing that many failures per account and per address, and a tenant.
async fn throttled(per_account: i32, per_address: i32) -> (TestApp, myscanner_tests::Tenant) {
    let app = TestApp::spawn_with(|c| {
        c.auth.login_throttle.max_failures_per_account = per_account;
        c.auth.login_throttle.max_failures_per_address = per_address;
    })
    .await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    (app, tenant)
}

#[tokio::test]
async fn failed_logins_lock_the_account() {
    let (app, tenant) = throttled(3, 100).await;
    let (_, other_token) = app.member(&tenant.admin_token, tenant.workgroup_id, &[]).await;
    let email = app.me(&tenant.admin_token).await["email"].as_str().unwrap().to_owned();
    let other = app.me(&other_token).await["email"].as_str().unwrap().to_owned();

    // Two failures, then a success, clear the count.
    for _ in 0..2 {
        assert_eq!(app.login_response(&email, "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    }
    app.login(&email, PASSWORD).await;
    for _ in 0..3 {
        assert_eq!(app.login_response(&email, "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked now: even the right password waits.
    let response = app.login_response(&email, PASSWORD).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0 && retry_after <= app.config.auth.login_throttle.window_secs);
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
    // Other accounts are not affected.
    app.login(&other, PASSWORD).await;
}

#[tokio::test]
async fn failed_logins_lock_the_client_address() {
    let (app, tenant) = throttled(100, 4).await;
    let email = app.me(&tenant.admin_token).await["email"].as_str().unwrap().to_owned();
    // Guessing across many accounts from one address.
    for i in 0..4 {
        let response = app.login_response(&format!("guess{i}@example.com"), "wrong password!!").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.login_response(&email, PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
}

#[tokio::test]
async fn users_change_their_password() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let email = app.me(&tenant.admin_token).await["email"].as_str().unwrap().to_owned();
    let change = |current, new| app.change_password(&tenant.admin_token, current, new);
    let wrong = change("not my password", "a brand new password").await;
    let problem = expect_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "current_password");
    let short = change(PASSWORD, "short").await;
    let problem = expect_problem(short, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "new_password");

    // The change answers with a new session; every earlier one has ended.
    let other_session = app.login(&email, PASSWORD).await;
    let changed = expect_json(change(PASSWORD, "a brand new password").await, StatusCode::OK).await;
    let fresh = changed["access_token"].as_str().unwrap();
    for old in [&tenant.admin_token, &other_session] {
        expect_problem(app.get("/api/v1/me", old).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    app.me(fresh).await;
    assert_eq!(app.login_response(&email, PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    app.login(&email, "a brand new password").await;
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(tenant.admin_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "passwords are stored as argon2id hashes");
}

/// A member whose e-mail has an `i` in it, for spelling it other ways.
async fn mia(app: &TestApp, tenant: &myscanner_tests::Tenant) -> String {
    let email = format!("mia-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({"email": email, "name": "Mia", "password": PASSWORD, "permissions": ["view_data"]});
    let path = format!("/api/v1/workgroups/{}/members", tenant.workgroup_id);
    expect_json(app.post(&path, &tenant.admin_token, body).await, StatusCode::CREATED).await;
    email
}

#[tokio::test]
async fn every_spelling_of_an_account_and_every_concurrent_guess_share_one_budget() {
    let (app, tenant) = throttled(3, 1000).await;

    // Locked under one spelling, locked under every spelling the lookup folds alike.
    let email = mia(&app, &tenant).await;
    for _ in 0..3 {
        assert_eq!(app.login_response(&email, "wrong password!!").await.status(), StatusCode::UNAUTHORIZED);
    }
    for spelling in [email.to_uppercase(), email.replacen('i', "İ", 1), format!("  {email} ")] {
        let response = app.login_response(&spelling, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{spelling} has a budget of its own");
    }

    // Guesses sent at once are counted before any is verified: only the budget gets through.
    let email = mia(&app, &tenant).await;
    let guesses = (0..12).map(|_| app.login_response(&email, "wrong password!!"));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(guesses).await.iter().map(|r| r.status()).collect();
    let verified = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(verified, 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn guesses_at_the_current_password_are_throttled_like_sign_ins() {
    let (app, tenant) = throttled(3, 1000).await;
    let change = |current| app.change_password(&tenant.admin_token, current, "a brand new password");
    for _ in 0..3 {
        expect_problem(change("a wrong guess").await, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    }
    let locked = change(PASSWORD).await;
    assert!(locked.headers().contains_key("retry-after"));
    expect_problem(locked, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
}

#[tokio::test]
async fn password_checks_beyond_the_service_s_turns_are_shed() {
    let app = TestApp::spawn_with(|c| {
        c.auth.password_checks_at_once = 1;
        c.auth.password_check_wait_ms = 0;
        c.auth.login_throttle.max_failures_per_address = 1000;
    })
    .await;
    let operator = app.operator().await;
    let tenant = app.tenant(&operator, "Acme").await;
    let email = mia(&app, &tenant).await;
    // Sixteen sign-ins at once for one turn at argon2: those that find it taken are shed.
    let nobodies: Vec<String> = (0..16).map(|i| format!("nobody-{i}@example.com")).collect();
    let burst = nobodies.iter().map(|nobody| app.login_response(nobody, "wrong password!!"));
    let responses = futures_util::future::join_all(burst).await;
    let shed: Vec<&reqwest::Response> =
        responses.iter().filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(!shed.is_empty(), "sixteen argon2 checks ran at once on one turn");
    assert!(shed.iter().all(|r| r.headers().contains_key("retry-after")));
    assert!(responses.iter().all(|r| [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status())));
    // A shed attempt was not a guess: the account still signs in.
    app.login(&email, PASSWORD).await;
}

/// Replicas remember callers for a second, so a request costs no authentication query; a
/// revoked API token, a removed member and a changed password are refused on every replica
/// within that second, and at once on the replica that made the change.
#[tokio::test]
async fn revocations_reach_every_replica_within_a_second() {
    let app = TestApp::spawn().await;
    let other = app.spawn_replica().await;
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let (member, member_token) = app.member(&t.admin_token, t.workgroup_id, &["view_data"]).await;
    let workgroup = format!("/api/v1/workgroups/{}", t.workgroup_id);
    let on = |base: &str, path: &str, token: &str| {
        app.client.get(format!("{base}{path}")).bearer_auth(token.to_owned()).send()
    };
    // Both replicas have seen each caller.
    for base in [&app.base_url, &other.base_url] {
        assert_eq!(on(base, &workgroup, &t.api_token).await.unwrap().status(), StatusCode::OK);
        assert_eq!(on(base, &workgroup, &member_token).await.unwrap().status(), StatusCode::OK);
        assert_eq!(on(base, "/api/v1/me", &t.admin_token).await.unwrap().status(), StatusCode::OK);
    }

    let tokens = format!("{workgroup}/api-tokens/{}", t.api_token_id);
    assert_eq!(app.delete(&tokens, &t.admin_token).await.status(), StatusCode::NO_CONTENT);
    let removed = app.delete(&format!("{workgroup}/members/{member}"), &t.admin_token).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let changed = app.change_password(&t.admin_token, PASSWORD, "a brand new password").await;
    assert_eq!(changed.status(), StatusCode::OK);

    // At once where the change was made...
    assert_eq!(on(&app.base_url, &workgroup, &t.api_token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(on(&app.base_url, &workgroup, &member_token).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(on(&app.base_url, "/api/v1/me", &t.admin_token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // ...and everywhere a second later.
    myscanner_tests::past_remembered_callers().await;
    assert_eq!(on(&other.base_url, &workgroup, &t.api_token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(on(&other.base_url, &workgroup, &member_token).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(on(&other.base_url, "/api/v1/me", &t.admin_token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
