//! API conventions: problem+json everywhere, validation detail, limits, pagination,
//! request ids, compression, CORS, health.

use myscanner_tests::{TcpProxy, TestApp, expect_json, expect_problem};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn invalid_input_gets_problem_documents_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.server.body_limit_bytes = 2048).await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let sites = format!("/api/v1/workgroups/{}/sites", a.workgroup_id);
    let site = format!("{sites}/{}", a.site_id);
    let before = expect_json(app.get(&site, &a.admin_token).await, StatusCode::OK).await;

    let invalid = app.post(&sites, &a.admin_token, json!({"name": " ", "time_zone": "Mars/Olympus"})).await;
    let problem = expect_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    assert_eq!(problem["errors"][1]["field"], "time_zone");

    let patch = app.patch(&site, &a.admin_token, json!({"time_zone": "Nowhere/Else"})).await;
    expect_problem(patch, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let unknown_field = app.patch(&site, &a.admin_token, json!({"colour": "red"})).await;
    let problem = expect_problem(unknown_field, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("colour"));
    let missing = app.post(&sites, &a.admin_token, json!({"name": "No zone"})).await;
    expect_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;

    let malformed = app
        .request(Method::POST, &sites, Some(&a.admin_token))
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    expect_problem(malformed, StatusCode::BAD_REQUEST, "invalid-request").await;
    let not_json = app.request(Method::POST, &sites, Some(&a.admin_token)).body("name=x").send().await.unwrap();
    expect_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    let huge = app.post(&sites, &a.admin_token, json!({"name": "x".repeat(4096), "time_zone": "UTC"})).await;
    expect_problem(huge, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    let bad_id = app.get(&format!("{sites}/not-a-uuid"), &a.admin_token).await;
    expect_problem(bad_id, StatusCode::BAD_REQUEST, "invalid-request").await;
    let nul = app.post(&sites, &a.admin_token, json!({"name": "North\u{0}", "time_zone": "UTC"})).await;
    expect_problem(nul, StatusCode::UNPROCESSABLE_ENTITY, "validation-failed").await;
    let taken = app.post(&sites, &a.admin_token, json!({"name": before["name"], "time_zone": "UTC"})).await;
    expect_problem(taken, StatusCode::CONFLICT, "site-name-taken").await;

    assert_eq!(
        expect_json(app.get(&site, &a.admin_token).await, StatusCode::OK).await,
        before,
        "nothing stored changed"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sites").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    expect_problem(
        app.client.get(app.url("/api/v1/nothing-here")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let wrong_method = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert!(wrong_method.headers().contains_key("allow"));
    expect_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    // A missing row of the caller's own workgroup is a 404 titled as one.
    let operator = app.operator().await;
    let t = app.tenant(&operator, "Acme").await;
    let missing = format!("/api/v1/workgroups/{}/devices/{}", t.workgroup_id, uuid::Uuid::now_v7());
    let problem = expect_problem(app.get(&missing, &t.admin_token).await, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(problem["title"], "Not found");
}

#[tokio::test]
async fn listings_page_with_cursors() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let a = app.tenant(&operator, "Acme").await;
    let sites = format!("/api/v1/workgroups/{}/sites", a.workgroup_id);
    for i in 0..6 {
        let response = app.post(&sites, &a.admin_token, json!({"name": format!("Site {i}"), "time_zone": "UTC"})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("{sites}?limit=3&cursor={c}"),
            None => format!("{sites}?limit=3"),
        };
        let page = expect_json(app.get(&query, &a.admin_token).await, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (7, 7), "every site exactly once");

    for bad in ["limit=0", "limit=100000", "cursor=garbage!", "limit=abc"] {
        let response = app.get(&format!("{sites}?{bad}"), &a.admin_token).await;
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
}

#[tokio::test]
async fn request_ids_compression_cors_and_health() {
    let app =
        TestApp::spawn_with(|c| c.server.cors_allowed_origins = vec!["https://dashboard.example.com".into()]).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(health.headers().contains_key("x-request-id"));
    expect_json(health, StatusCode::OK).await;
    expect_json(app.client.get(app.url("/readyz")).send().await.unwrap(), StatusCode::OK).await;

    let given = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123", "a caller's request id is kept");

    let gzip = app.client.get(app.url("/api/v1/openapi.json")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");

    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://dashboard.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://dashboard.example.com");
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let port = proxy.addr.port();
    let app = TestApp::spawn_with(|c| {
        let url = c.database.url.expose().replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
        c.database.url = myscanner::config::Secret::new(url);
    })
    .await;
    proxy.cut();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // Liveness does not depend on the database.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    proxy.restore();
    app.wait_until_ready().await;
}

#[tokio::test]
async fn requests_hyper_cannot_read_are_problems_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    // Sent by hand: no HTTP client builds a URI this long.
    let mut socket = tokio::net::TcpStream::connect(app.base_url.trim_start_matches("http://")).await.unwrap();
    let request = format!("GET /api/v1/workgroups?q={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000));
    let _ = socket.write_all(request.as_bytes()).await; // the service may answer before it has read it all
    let mut answer = vec![];
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    assert!(head.starts_with("HTTP/1.1 414"), "{head}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (problem["type"].as_str(), &problem["status"]),
        (Some("urn:myscanner:problem:uri-too-long"), &json!(414))
    );

    let huge = app.request(Method::GET, "/healthz", None).header("x-filler", "b".repeat(1 << 20)).send().await.unwrap();
    expect_problem(huge, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large").await;
    // The service is none the worse.
    expect_json(app.request(Method::GET, "/healthz", None).send().await.unwrap(), StatusCode::OK).await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_its_413_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Over TLS, with a client that sends its whole body before it reads (as many do): the
    // answer comes before the body is read, and a close with unread data would reset the
    // connection and destroy it.
    let (ca, dir) = (myscanner_tests::tls::TestCa::new(), tempfile::tempdir().unwrap());
    let app = TestApp::spawn_tls(&ca, &ca.issue(&["127.0.0.1"]), dir.path(), |_| {}).await;
    let operator = app.operator().await;
    let address = app.base_url.trim_start_matches("https://").to_owned();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(app.tls.clone());
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let body = vec![b' '; 4 * app.config.server.body_limit_bytes];
        let head = format!(
            "POST /api/v1/workgroups HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {operator}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body).await.expect("the whole body goes out");
        let mut answer = vec![];
        let _ = tls.read_to_end(&mut answer).await; // the service may end without close_notify
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{}", answer.chars().take(200).collect::<String>());
        assert!(answer.contains("urn:myscanner:problem:payload-too-large"));
    }
}
