//! Responses checked against the published contract: every JSON body a test reads through
//! [`crate::expect_json`] must match the schema `openapi/openapi.json` documents for its
//! path and status — and the status must be documented at all. Clients are generated from
//! the document, so it must be exactly what the service does.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../../openapi/openapi.json");

fn document() -> &'static Value {
    static DOCUMENT_VALUE: OnceLock<Value> = OnceLock::new();
    DOCUMENT_VALUE.get_or_init(|| serde_json::from_str(DOCUMENT).expect("openapi.json is JSON"))
}

/// The documented path template `path` (a request's path, no query) falls under: of those
/// that match, the one with the most literal segments (as the router chooses).
fn template(path: &str) -> Option<&'static str> {
    let wanted: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let is_parameter = |t: &str| t.starts_with('{') && t.ends_with('}');
    document()["paths"]
        .as_object()?
        .keys()
        .map(String::as_str)
        .filter(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == wanted.len() && parts.iter().zip(&wanted).all(|(t, w)| is_parameter(t) || t == w)
        })
        .max_by_key(|template| template.split('/').filter(|t| !is_parameter(t)).count())
}

/// JSON pointers of the schemas documented for `status` answers on `template`, over its
/// operations (the request's method is not known here), for JSON content types; `None` when
/// one of them documents JSON without a schema (anything goes).
fn documented(template: &str, status: u16) -> Option<Vec<String>> {
    let escaped = template.replace('~', "~0").replace('/', "~1");
    let mut pointers = vec![];
    let Some(operations) = document()["paths"][template].as_object() else { return Some(pointers) };
    for (method, operation) in operations {
        let Some(content) = operation["responses"][status.to_string()]["content"].as_object() else { continue };
        for (media_type, media) in content.iter().filter(|(media_type, _)| media_type.ends_with("json")) {
            media.get("schema")?;
            let media_type = media_type.replace('~', "~0").replace('/', "~1");
            pointers.push(format!("#/paths/{escaped}/{method}/responses/{status}/content/{media_type}/schema"));
        }
    }
    Some(pointers)
}

fn validator(pointer: &str) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> = OnceLock::new();
    let mut validators = VALIDATORS.get_or_init(Default::default).lock().unwrap();
    validators.entry(pointer.to_owned()).or_insert_with(|| {
        // The whole document is the root, so `#/components/…` references resolve in it.
        let mut root = document().clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["$ref"] = json!(uri_fragment(pointer));
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {pointer}: {e}"));
        Box::leak(Box::new(validator))
    })
}

/// Panics unless `body`, which the service accepted for `method` on `path`, is allowed by the
/// request body schema the document gives: what the server takes, the document must too.
pub fn check_request(method: &str, path: &str, body: &Value) {
    let Some(template) = template(path) else { return };
    let method = method.to_ascii_lowercase();
    // An operation without a documented body does not read one (tests send `{}` to some).
    if document()["paths"][template][&method]["requestBody"].is_null() {
        return;
    }
    let escaped = template.replace('~', "~0").replace('/', "~1");
    let pointer = format!("#/paths/{escaped}/{method}/requestBody/content/application~1json/schema");
    let errors: Vec<String> =
        validator(&pointer).iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{method} {path}: the service took a body its document refuses:\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}

/// A JSON pointer as a URI fragment (`{` and `}` of path templates percent-encoded).
fn uri_fragment(pointer: &str) -> String {
    pointer
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | '/' | '#' => c.to_string(),
            other => other.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
        })
        .collect()
}

/// Panics unless `body`, answered with `status` on `path`, is what the document says.
pub fn check(path: &str, status: u16, body: &Value) {
    let Some(template) = template(path) else { return }; // not part of the public API
    // A method the path does not have: not an operation the document could describe.
    if status == 405 {
        return;
    }
    let Some(pointers) = documented(template, status) else { return };
    assert!(!pointers.is_empty(), "{path}: status {status} with a JSON body is not documented for {template}");
    let mut complaints = vec![];
    for pointer in &pointers {
        let errors: Vec<String> =
            validator(pointer).iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        if errors.is_empty() {
            return;
        }
        complaints.push(format!("{pointer}:\n    {}", errors.join("\n    ")));
    }
    panic!(
        "{path} answered {status} with a body the document does not allow:\n  {}\nbody: {body}",
        complaints.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_templates() {
        assert_eq!(
            template("/api/v1/workgroups/3c4e9f52-0000-7000-8000-000000000000/sites"),
            Some("/api/v1/workgroups/{workgroup_id}/sites")
        );
        assert_eq!(template("/internal/v1/tunnels/x/sessions/y"), None);
    }
}
