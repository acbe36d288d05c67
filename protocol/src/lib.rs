//! The contracts between scanners and MyScanner Cloud that both sides compile against: the
//! AMQP measurement message (documented in `openapi/asyncapi.yaml`) and the load-profile
//! encoding, the remote-control tunnel, sync, and the TLS every link uses. Versioned: a
//! message carries its `schema_version`.

pub mod measurement;
pub mod profile;
pub mod read_ahead;
pub mod sync;
pub mod text;
pub mod tls;
pub mod tunnel;

pub use measurement::{LoadDetail, MeasurementV1, Truck};
pub use profile::LoadProfile;

/// The topic exchange devices publish measurements to.
pub const MEASUREMENTS_EXCHANGE: &str = "measurements";

/// The routing key of a device's measurements; each device may publish only on its own.
pub fn routing_key(device_id: uuid::Uuid) -> String {
    format!("device.{device_id}")
}
