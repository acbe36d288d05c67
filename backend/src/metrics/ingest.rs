//! What ingest's figures need beyond counting: the kind of a rejection's reason, and the
//! depth of the ingest queue read from the broker at scrape time.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;

use crate::broker::{self, INGEST_QUEUE};

/// The kind of a rejection, from its reason (`measurements::validate` and the consumer
/// write them): a fixed label, where reasons quote what devices sent.
pub fn rejection_kind(reason: &str) -> &'static str {
    // Most specific first: "profile rows out of range" is about the profile.
    const KINDS: [(&str, &str); 11] = [
        ("message of ", "too_large"),
        ("malformed JSON", "malformed"),
        ("does not match measurement schema", "schema"),
        ("unknown schema version", "schema"),
        ("missing schema_version", "schema"),
        ("wrong identity", "identity"),
        ("routing key", "routing_key"),
        ("profile", "profile"),
        ("out of range", "out_of_range"),
        ("unknown device", "unknown_device"),
        ("refused by the database", "database"),
    ];
    if reason.contains("for MPS devices only") {
        return "device_kind";
    }
    KINDS.iter().find(|(start, _)| reason.starts_with(start)).map_or("other", |(_, kind)| kind)
}

/// The ingest queue's depth and consumers, from a passive `queue.declare` on a link of its
/// own (opened at the first scrape, opened again after a failure): exact at the moment of
/// the scrape, unlike the management API's sampled statistics.
pub struct QueueProbe {
    url: String,
    link: Mutex<Option<(Connection, Channel)>>,
}

/// The ingest queue as the broker sees it.
pub struct QueueDepth {
    /// Messages ready for delivery: published, not yet handed to a consumer.
    pub ready: u32,
    pub consumers: u32,
}

impl QueueProbe {
    pub fn new(url: &str) -> Self {
        QueueProbe { url: url.to_owned(), link: Mutex::default() }
    }

    pub async fn depth(&self) -> anyhow::Result<QueueDepth> {
        let mut link = self.link.lock().await;
        if !link.as_ref().is_some_and(|(_, channel)| channel.status().connected()) {
            let connection = broker::connect(&self.url, "myscanner-metrics").await?;
            let channel = connection.create_channel().await?;
            *link = Some((connection, channel));
        }
        let (_, channel) = link.as_ref().expect("just opened");
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        match channel.queue_declare(INGEST_QUEUE.into(), passive, FieldTable::default()).await {
            Ok(queue) => Ok(QueueDepth { ready: queue.message_count(), consumers: queue.consumer_count() }),
            Err(error) => {
                // A missing queue closes the channel: the next scrape opens a new link.
                if let Some((connection, _)) = link.take() {
                    let _ = connection.close(200, "metrics".into()).await;
                }
                Err(error.into())
            }
        }
    }

    pub async fn close(&self) {
        if let Some((connection, _)) = self.link.lock().await.take() {
            let _ = connection.close(200, "shutdown".into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use myscanner_protocol::MeasurementV1;
    use serde_json::{Value, json};
    use uuid::Uuid;

    use super::rejection_kind;
    use crate::devices::DeviceKind;
    use crate::measurements::validate::{self, Incoming};

    fn measurement(device_id: Uuid) -> Value {
        json!({
            "schema_version": 1, "measurement_id": Uuid::now_v7(), "device_id": device_id,
            "scanned_at": Utc::now(), "truck": {"truck_id": "T-7"}, "volume_m3": 12.5,
        })
    }

    /// The kind of the rejection `validate` gives `body` from device `device_id`.
    fn kind_of(body: &[u8], device_id: Uuid, user: Option<&str>) -> &'static str {
        let prefix = "device-";
        let own = format!("{prefix}{device_id}");
        let message = Incoming {
            body,
            routing_key: &myscanner_protocol::routing_key(device_id),
            user_id: Some(user.unwrap_or(&own)),
        };
        let devices = HashMap::from([(device_id, DeviceKind::Lvs)]);
        let rejection = validate::parse(&message, prefix, 4096)
            .and_then(|parsed| validate::to_row(parsed, &devices))
            .expect_err("a message validate rejects");
        rejection_kind(&rejection.reason)
    }

    fn with(change: impl FnOnce(&mut Value)) -> Vec<u8> {
        let device_id = Uuid::nil();
        let mut m = measurement(device_id);
        change(&mut m);
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn every_reason_validate_gives_has_a_kind_of_its_own() {
        let device = Uuid::nil();
        let valid: MeasurementV1 = serde_json::from_slice(&with(|_| {})).expect("the sample is a measurement");
        assert_eq!(valid.device_id, device);
        let other_device = format!("device-{}", Uuid::max());
        let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
            (vec![b' '; 5000], None, "too_large"),
            (b"{\"schema_version\": 1,".to_vec(), None, "malformed"),
            (with(|m| m["schema_version"] = json!(7)), None, "schema"),
            (with(|m| drop(m.as_object_mut().unwrap().remove("schema_version"))), None, "schema"),
            (with(|m| drop(m.as_object_mut().unwrap().remove("truck"))), None, "schema"),
            (with(|_| {}), Some("device-someone-else"), "identity"),
            (with(|m| m["volume_m3"] = json!(-3.0)), None, "out_of_range"),
            (with(|m| m["truck"]["truck_id"] = json!("T\u{0}7")), None, "out_of_range"),
            (
                with(|m| {
                    m["profile"] =
                        json!({"rows": 2, "cols": 2, "cell_size_mm": 100, "encoding": "u16-mm-le", "heights": "AAA="})
                }),
                None,
                "profile",
            ),
            (with(|m| m["payload_t"] = json!(40.0)), None, "device_kind"),
            (with(|m| m["device_id"] = json!(Uuid::max())), Some(&other_device), "routing_key"),
        ];
        for (body, user, expected) in cases {
            assert_eq!(kind_of(&body, device, user), expected, "{}", String::from_utf8_lossy(&body));
        }
        let unknown = validate::to_row(
            validate::check(valid).expect("a valid measurement"),
            &HashMap::from([(Uuid::max(), DeviceKind::Lvs)]),
        );
        assert_eq!(rejection_kind(&unknown.expect_err("an unknown device").reason), "unknown_device");
    }

    #[test]
    fn reasons_of_the_database_and_anything_new_are_labelled_too() {
        assert_eq!(rejection_kind("refused by the database: value too long"), "database");
        assert_eq!(rejection_kind("a reason nobody has written yet"), "other");
    }
}
