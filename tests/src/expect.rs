//! Assertions on the service's answers. Every JSON body a test reads through them is also
//! held to the published OpenAPI document, so the document cannot drift from the service.

use reqwest::{Response, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::contract;

pub fn uuid(value: &Value) -> Uuid {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a UUID: {value}"))
}

/// Asserts the status and returns the JSON body, which must be what the published OpenAPI
/// document says this path answers with this status ([`contract::check`]).
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let path = response.url().path().to_owned();
    let json =
        response.headers().get("content-type").is_some_and(|ct| ct.to_str().unwrap_or_default().contains("json"));
    let body = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {body}");
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if json {
        contract::check(&path, status.as_u16(), &value);
    }
    value
}

/// Asserts a problem+json answer with this status and problem code; returns the problem.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let problem = expect_json(response, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{problem}");
    assert_eq!(problem["type"], format!("urn:myscanner:problem:{code}"), "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    problem
}
