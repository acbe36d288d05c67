//! From an AMQP message to a row that can be stored, or the reason it never can be.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use myscanner_protocol::measurement::{Envelope, SCHEMA_VERSION};
use myscanner_protocol::{MeasurementV1, routing_key};
use uuid::Uuid;

use crate::devices::DeviceKind;

/// What the consumer knows of a message besides its body.
pub struct Incoming<'a> {
    pub body: &'a [u8],
    pub routing_key: &'a str,
    /// The AMQP `user_id` property, which RabbitMQ checks against the connection's user.
    pub user_id: Option<&'a str>,
}

/// A measurement ready to insert.
#[derive(Debug, Clone)]
pub struct Row {
    pub device_id: Uuid,
    pub measurement_id: Uuid,
    pub scanned_at: DateTime<Utc>,
    pub truck_id: String,
    pub truck_name: Option<String>,
    pub reference_scan_id: Option<Uuid>,
    pub volume_m3: f64,
    pub payload_t: Option<f64>,
    pub carry_back_m3: Option<f64>,
    pub load_details: serde_json::Value,
    pub quality_flags: Vec<String>,
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub rows: i16,
    pub cols: i16,
    pub cell_size_mm: i32,
    pub heights: Vec<u8>,
}

/// A message that can never be stored.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: String,
    pub claimed_device_id: Option<Uuid>,
}

/// Reasons quote what a device sent; control characters (NUL above all, which PostgreSQL
/// text cannot hold) are replaced so that the rejection itself can always be recorded.
pub fn reject(reason: impl Into<String>, claimed_device_id: Option<Uuid>) -> Rejection {
    Rejection { reason: printable(&reason.into()), claimed_device_id }
}

/// Text from a device with its control characters replaced, so that it can be stored.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// A message that passed every check that needs no database, its load profile decoded
/// (once: the heights are the bulk of a message).
#[derive(Debug)]
pub struct Parsed {
    /// The measurement, without its profile.
    pub measurement: MeasurementV1,
    pub profile: Option<Profile>,
}

/// Parses the body and checks everything that needs no database: schema, identity, ranges.
pub fn parse(message: &Incoming<'_>, user_prefix: &str, max_bytes: usize) -> Result<Parsed, Rejection> {
    if message.body.len() > max_bytes {
        return Err(reject(
            format!("message of {} bytes exceeds the {max_bytes}-byte limit", message.body.len()),
            None,
        ));
    }
    // Parsed once in the common case; only a body that does not fit v1 is looked at again
    // to say why (malformed, or another schema version).
    let m: MeasurementV1 = match serde_json::from_slice(message.body) {
        Ok(m) => m,
        Err(error) => {
            let envelope: Envelope =
                serde_json::from_slice(message.body).map_err(|e| reject(format!("malformed JSON: {e}"), None))?;
            return Err(match envelope.schema_version {
                Some(SCHEMA_VERSION) => reject(format!("does not match measurement schema v1: {error}"), None),
                Some(other) => reject(format!("unknown schema version {other}"), None),
                None => reject("missing schema_version", None),
            });
        }
    };
    if m.schema_version != SCHEMA_VERSION {
        return Err(reject(format!("unknown schema version {}", m.schema_version), None));
    }
    let claimed = Some(m.device_id);
    let expected_user = format!("{user_prefix}{}", m.device_id);
    match message.user_id {
        Some(user) if user == expected_user => {}
        Some(user) => {
            return Err(reject(format!("wrong identity: published by `{user}` for device {}", m.device_id), claimed));
        }
        None => return Err(reject("wrong identity: no user_id property", claimed)),
    }
    if message.routing_key != routing_key(m.device_id) {
        return Err(reject(format!("routing key `{}` is not the device's own", message.routing_key), claimed));
    }
    check(m)
}

/// Checks the values of a measurement and decodes its profile.
pub fn check(mut m: MeasurementV1) -> Result<Parsed, Rejection> {
    let claimed = Some(m.device_id);
    check_ranges(&m).map_err(|reason| reject(reason, claimed))?;
    let profile = match m.profile.take() {
        Some(p) => Some(Profile {
            rows: i16::try_from(p.rows).map_err(|_| reject("profile rows out of range", claimed))?,
            cols: i16::try_from(p.cols).map_err(|_| reject("profile cols out of range", claimed))?,
            cell_size_mm: i32::from(p.cell_size_mm),
            heights: p.decode().map_err(|reason| reject(reason, claimed))?,
        }),
        None => None,
    };
    Ok(Parsed { measurement: m, profile })
}

fn check_ranges(m: &MeasurementV1) -> Result<(), String> {
    let in_range = |field: &str, value: f64, max: f64| {
        if value.is_finite() && (0.0..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!("out of range: {field} = {value} (0–{max})"))
        }
    };
    in_range("volume_m3", m.volume_m3, 1000.0)?;
    if let Some(payload) = m.payload_t {
        in_range("payload_t", payload, 1000.0)?;
    }
    if let Some(carry_back) = m.carry_back_m3 {
        in_range("carry_back_m3", carry_back, 200.0)?;
    }
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    // A day of clock skew is tolerated; a scan further in the future is a broken clock.
    if m.scanned_at < earliest || m.scanned_at > Utc::now() + chrono::Duration::days(1) {
        return Err(format!("out of range: scanned_at = {}", m.scanned_at.to_rfc3339()));
    }
    let text = |field: &str, value: &str, max: usize| {
        if myscanner_protocol::text::printable(value, max) {
            Ok(())
        } else {
            Err(format!("out of range: {field} must be 1–{max} characters, no control characters"))
        }
    };
    text("truck.truck_id", &m.truck.truck_id, 64)?;
    if let Some(name) = &m.truck.name {
        text("truck.name", name, 200)?;
    }
    if m.load_details.len() > 32 || m.quality_flags.len() > 32 {
        return Err("out of range: at most 32 load details and 32 quality flags".to_owned());
    }
    for detail in &m.load_details {
        text("load_details.list", &detail.list, 64)?;
        text("load_details.code", &detail.code, 64)?;
        if let Some(label) = &detail.label {
            text("load_details.label", label, 200)?;
        }
    }
    for flag in &m.quality_flags {
        text("quality_flags", flag, 64)?;
    }
    Ok(())
}

/// Checks a parsed measurement against its device (known devices and their kinds).
pub fn to_row(
    Parsed { measurement: m, profile }: Parsed,
    devices: &HashMap<Uuid, DeviceKind>,
) -> Result<Row, Rejection> {
    let claimed = Some(m.device_id);
    let kind = devices.get(&m.device_id).ok_or_else(|| reject("unknown device", claimed))?;
    if *kind == DeviceKind::Lvs && (m.payload_t.is_some() || m.carry_back_m3.is_some()) {
        return Err(reject("payload_t and carry_back_m3 are for MPS devices only", claimed));
    }
    Ok(Row {
        device_id: m.device_id,
        measurement_id: m.measurement_id,
        scanned_at: m.scanned_at,
        truck_id: m.truck.truck_id,
        truck_name: m.truck.name,
        reference_scan_id: m.truck.reference_scan_id,
        volume_m3: m.volume_m3,
        payload_t: m.payload_t,
        carry_back_m3: m.carry_back_m3,
        load_details: serde_json::to_value(&m.load_details).expect("load details serialise"),
        quality_flags: m.quality_flags,
        profile,
    })
}
