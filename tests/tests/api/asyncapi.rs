//! `openapi/asyncapi.yaml` describes exactly what the service accepts: the same fields, the
//! same required ones, no others, the same limits, and the broker names the code uses.

use chrono::Utc;
use myscanner::measurements::validate::{self, Incoming};
use myscanner_agent::simulate::MeasurementFactory;
use myscanner_protocol::{LoadDetail, MeasurementV1};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

const ASYNCAPI: &str = include_str!("../../../openapi/asyncapi.yaml");

fn spec() -> Value {
    serde_yaml_ng::from_str(ASYNCAPI).unwrap()
}

/// A measurement with every optional field present.
fn full() -> MeasurementV1 {
    let mut m = MeasurementFactory::new(Uuid::now_v7(), Uuid::now_v7(), true).next(Utc::now());
    m.quality_flags = vec!["truck_moving".into()];
    m.load_details = vec![LoadDetail { list: "material".into(), code: "ROCK".into(), label: Some("Rock".into()) }];
    m
}

/// Checks one schema against a Rust type: its properties are the fields serde writes, its
/// `required` are those whose absence serde refuses, and unknown fields are refused.
fn check_schema<T: DeserializeOwned>(spec: &Value, name: &str, example: Value) {
    let schema = &spec["components"]["schemas"][name];
    assert_eq!(schema["additionalProperties"], false, "{name}: additionalProperties");
    let mut documented: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
    let mut actual: Vec<String> = example.as_object().unwrap().keys().cloned().collect();
    documented.sort();
    actual.sort();
    assert_eq!(documented, actual, "{name}: documented properties differ from the code's");

    let mut required: Vec<String> = vec![];
    for field in &actual {
        let mut without = example.clone();
        without.as_object_mut().unwrap().remove(field);
        if serde_json::from_value::<T>(without).is_err() {
            required.push(field.clone());
        }
    }
    let mut documented_required: Vec<String> =
        schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    documented_required.sort();
    required.sort();
    assert_eq!(documented_required, required, "{name}: required fields differ from the code's");

    let mut extra = example;
    extra["unexpected"] = json!(1);
    assert!(serde_json::from_value::<T>(extra).is_err(), "{name}: unknown fields must be refused");
}

#[test]
fn the_message_schema_matches_the_code() {
    let spec = spec();
    let m = full();
    let value = serde_json::to_value(&m).unwrap();
    check_schema::<MeasurementV1>(&spec, "MeasurementV1", value.clone());
    check_schema::<myscanner_protocol::Truck>(&spec, "Truck", value["truck"].clone());
    check_schema::<LoadDetail>(&spec, "LoadDetail", value["load_details"][0].clone());
    check_schema::<myscanner_protocol::LoadProfile>(&spec, "LoadProfile", value["profile"].clone());
    let profile = &spec["components"]["schemas"]["LoadProfile"]["properties"];
    assert_eq!(profile["encoding"]["const"], myscanner_protocol::profile::ENCODING);
    assert_eq!(profile["rows"]["maximum"], myscanner_protocol::profile::MAX_SIDE);
    assert_eq!(spec["components"]["schemas"]["MeasurementV1"]["properties"]["schema_version"]["const"], 1);
}

#[test]
fn the_documented_limits_are_the_enforced_ones() {
    let spec = spec();
    let properties = &spec["components"]["schemas"]["MeasurementV1"]["properties"];
    let m = full();
    let user = format!("device-{}", m.device_id);
    let key = myscanner_protocol::routing_key(m.device_id);
    let accepts = |field: &str, value: f64| {
        let mut v = serde_json::to_value(&m).unwrap();
        v[field] = json!(value);
        let body = serde_json::to_vec(&v).unwrap();
        validate::parse(&Incoming { body: &body, routing_key: &key, user_id: Some(&user) }, "device-", 1 << 20).is_ok()
    };
    for field in ["volume_m3", "payload_t", "carry_back_m3"] {
        let max = properties[field]["maximum"].as_f64().unwrap();
        assert!(accepts(field, max) && accepts(field, 0.0), "{field} up to {max} is accepted");
        assert!(!accepts(field, max * 1.001) && !accepts(field, -0.1), "{field} beyond 0–{max} is refused");
    }
}

#[test]
fn broker_names_match_the_code() {
    let spec = spec();
    let channel = &spec["channels"]["deviceMeasurements"];
    assert_eq!(channel["bindings"]["amqp"]["exchange"]["name"], myscanner_protocol::MEASUREMENTS_EXCHANGE);
    assert_eq!(channel["address"], "device.{device_id}");
    assert_eq!(myscanner_protocol::routing_key(Uuid::nil()), format!("device.{}", Uuid::nil()));
    assert_eq!(
        spec["channels"]["deadLetters"]["bindings"]["amqp"]["queue"]["name"],
        myscanner::broker::DEAD_LETTER_QUEUE
    );
    assert!(ASYNCAPI.contains(myscanner::broker::INGEST_QUEUE));
    assert!(ASYNCAPI.contains("x-rejection-reason"));
}

/// The message as JSON with the field at `path` set to `value`.
fn with(m: &MeasurementV1, path: &[&str], value: Value) -> Value {
    let mut v = serde_json::to_value(m).unwrap();
    let mut node = &mut v;
    for part in path {
        node = match part.parse::<usize>() {
            Ok(i) => &mut node[i],
            Err(_) => &mut node[*part],
        };
    }
    *node = value;
    v
}

/// For every text field, lengths at and beyond each documented bound: the document and the
/// service agree on each (a publisher generated from the document is never surprised).
#[test]
fn the_document_and_the_service_agree_on_every_text_length() {
    let mut root = spec();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!("#/components/schemas/MeasurementV1");
    let schema = jsonschema::validator_for(&root).unwrap();
    let m = full();
    let user = format!("device-{}", m.device_id);
    let key = myscanner_protocol::routing_key(m.device_id);
    let service_accepts = |v: &Value| {
        let body = serde_json::to_vec(v).unwrap();
        validate::parse(&Incoming { body: &body, routing_key: &key, user_id: Some(&user) }, "device-", 1 << 20).is_ok()
    };
    let fields: [(&str, &[&str]); 6] = [
        ("truck_id", &["truck", "truck_id"]),
        ("truck name", &["truck", "name"]),
        ("list", &["load_details", "0", "list"]),
        ("code", &["load_details", "0", "code"]),
        ("label", &["load_details", "0", "label"]),
        ("quality flag", &["quality_flags", "0"]),
    ];
    for (name, path) in fields {
        for length in [0, 1, 63, 64, 65, 199, 200, 201] {
            let v = with(&m, path, json!("é".repeat(length)));
            assert_eq!(schema.is_valid(&v), service_accepts(&v), "{name} of {length} characters");
        }
        // Control characters: refused by both, wherever they stand.
        for control in ["\t", "\n", "\u{0}", "\u{7f}", "\u{85}"] {
            let v = with(&m, path, json!(format!("a{control}b")));
            assert!(!schema.is_valid(&v) && !service_accepts(&v), "{name} with {control:?}");
        }
    }
}
