//! The committed OpenAPI document is the one the code generates, and it is complete.

use std::collections::HashSet;

use myscanner_tests::{TestApp, expect_json};
use reqwest::StatusCode;
use serde_json::Value;

const COMMITTED: &str = include_str!("../../../openapi/openapi.json");

#[test]
fn committed_openapi_matches_the_code() {
    let generated = myscanner::http::openapi::spec_json();
    if generated != COMMITTED {
        panic!(
            "openapi/openapi.json is out of date; regenerate it with\n\
             cargo run -q -p myscanner -- openapi > openapi/openapi.json"
        );
    }
}

#[tokio::test]
async fn the_service_serves_the_committed_document() {
    let app = TestApp::spawn().await;
    let served =
        expect_json(app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(served, serde_json::from_str::<Value>(COMMITTED).unwrap());
}

#[test]
fn every_operation_is_documented_with_errors_and_security() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let public: HashSet<&str> = ["/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/auth/login"].into();
    let mut ids = HashSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} repeats");
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            assert!(op["responses"]["500"].is_object(), "{method} {path} lacks the 500 problem response");
            if !public.contains(path.as_str()) {
                assert!(op["security"].as_array().is_some_and(|s| !s.is_empty()), "{method} {path} has no security");
                let unauthorized = &op["responses"]["401"]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(unauthorized, "#/components/schemas/Problem", "{method} {path}");
            }
        }
    }
    for scheme in ["user_jwt", "api_token", "device_credential"] {
        assert!(spec["components"]["securitySchemes"][scheme].is_object(), "{scheme}");
    }
}
