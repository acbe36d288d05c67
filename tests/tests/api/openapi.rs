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

/// Every `$ref` of the document, with where it is.
fn refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref" {
                    found.push((value.as_str().unwrap_or_default().to_owned(), at.to_owned()));
                } else {
                    refs(value, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| refs(v, &format!("{at}/{i}"), found)),
        _ => {}
    }
}

#[test]
fn every_reference_in_the_document_resolves() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut found = vec![];
    refs(&spec, "", &mut found);
    let dangling: Vec<String> = found
        .into_iter()
        .filter(|(target, _)| spec.pointer(target.trim_start_matches('#')).is_none())
        .map(|(target, at)| format!("{target} (at {at})"))
        .collect();
    assert!(dangling.is_empty(), "unresolved references: {dangling:#?}");
}

/// The schema name of each type deriving `ToSchema` in `dir` (its own, or `#[schema(as = …)]`).
fn schema_names(dir: &std::path::Path, names: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            schema_names(&path, names);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.starts_with("#[derive(") && line.contains("ToSchema")) {
                continue;
            }
            let mut renamed = None;
            for next in &lines[i + 1..] {
                if let Some(rest) = next.strip_prefix("#[schema(as = ") {
                    renamed = rest.split([')', ',']).next().map(|s| s.trim().rsplit("::").next().unwrap().to_owned());
                }
                let item = next.strip_prefix("pub ").unwrap_or(next);
                if let Some(rest) = item.strip_prefix("struct ").or_else(|| item.strip_prefix("enum ")) {
                    let own: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    names.push((renamed.unwrap_or(own), path.display().to_string()));
                    break;
                }
            }
        }
    }
}

#[test]
fn no_two_types_share_a_schema_name() {
    // utoipa keeps one of two schemas of the same name, silently: the other's operations
    // would then be documented with a shape they do not have.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut names = vec![];
    for dir in ["backend/src", "protocol/src"] {
        schema_names(&root.join(dir), &mut names);
    }
    assert!(names.len() > 20, "the scan found the API's types");
    names.sort();
    let repeated: Vec<String> = names
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .map(|pair| format!("{} in {} and {}", pair[0].0, pair[0].1, pair[1].1))
        .collect();
    assert!(repeated.is_empty(), "schema names used twice: {repeated:#?}");
}

/// Patterns written out in schema attributes are the ones the service checks with.
#[test]
fn documented_patterns_are_the_checked_ones() {
    let document: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json")).unwrap();
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["NewMember"]["properties"]["email"]["pattern"], myscanner::workgroups::members::EMAIL_PATTERN);
    let serial = regex::Regex::new(schemas["NewDevice"]["properties"]["serial"]["pattern"].as_str().unwrap()).unwrap();
    for candidate in ["LVS-2024-0042", "a.b_c", "", "bad serial!", "é", &"x".repeat(65)] {
        assert_eq!(serial.is_match(candidate), myscanner::devices::valid_serial(candidate), "{candidate:?}");
    }
    let email = regex::Regex::new(myscanner::workgroups::members::EMAIL_PATTERN).unwrap();
    for (candidate, valid) in
        [("mia@example.com", true), (" mia@example.com", false), ("a@b@c.d", false), ("a@b", false)]
    {
        assert_eq!(email.is_match(candidate), valid, "{candidate:?}");
        assert_eq!(myscanner::workgroups::members::valid_email(candidate), valid, "{candidate:?}");
    }
}
