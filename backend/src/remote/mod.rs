//! Remote control of scanners that accept no inbound connections.
//!
//! - `tunnel`: the WebSocket a scanner holds open while remote control is allowed on it;
//!   yamux streams ride it, one per session.
//! - `registry`: which tunnels this replica holds (in memory) and every replica holds (the
//!   `device_tunnels` table), the sessions this replica serves, heartbeats and clean-up.
//! - `session`: a user's session, a WebSocket of binary messages (what noVNC speaks) joined
//!   to a stream of the scanner's tunnel, audited in `remote_sessions`.
//! - `peer`: a session that reaches a replica not holding the tunnel is routed to the one
//!   that does.
//! - `api`: the audit (active and past sessions, ending one) and who is online.
//! - `forward`: `myscanner remote`, a local port for native VNC clients.

pub mod api;
pub mod forward;
pub mod peer;
pub mod registry;
pub mod session;
pub mod tunnel;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use registry::Registry;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CloseReason {
    /// The user's client closed the session.
    ClientClosed,
    /// The scanner's local service closed the connection.
    DeviceClosed,
    /// The scanner's tunnel dropped.
    TunnelLost,
    /// No bytes either way for `remote.idle_timeout_secs`.
    IdleTimeout,
    /// A workgroup admin ended it.
    EndedByAdmin,
    /// Remote control was switched off on the scanner.
    RemoteControlDisabled,
    /// Its user lost the authority that opened it: removed from the workgroup, no longer
    /// allowed to control devices, or their password was changed.
    AccessRevoked,
    /// The workgroup's subscription lapsed or was cancelled.
    SubscriptionInactive,
    /// The replica serving it shut down.
    ServiceShutdown,
    /// The replica serving it stopped heartbeating (crashed).
    ReplicaLost,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::DeviceClosed => "device_closed",
            CloseReason::TunnelLost => "tunnel_lost",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::EndedByAdmin => "ended_by_admin",
            CloseReason::RemoteControlDisabled => "remote_control_disabled",
            CloseReason::AccessRevoked => "access_revoked",
            CloseReason::SubscriptionInactive => "subscription_inactive",
            CloseReason::ServiceShutdown => "service_shutdown",
            CloseReason::ReplicaLost => "replica_lost",
        }
    }
}

/// The limits every remote-control WebSocket is read with (tunnel, session, relay): those
/// of the clients' side (`myscanner_protocol::tunnel::websocket_config`).
pub fn limited(upgrade: axum::extract::ws::WebSocketUpgrade) -> axum::extract::ws::WebSocketUpgrade {
    use myscanner_protocol::tunnel::{MAX_WEBSOCKET_MESSAGE, WEBSOCKET_READ};
    upgrade
        .read_buffer_size(WEBSOCKET_READ)
        .max_message_size(MAX_WEBSOCKET_MESSAGE)
        .max_frame_size(MAX_WEBSOCKET_MESSAGE)
}

/// The problem a session to an unconnected scanner gets, at once.
pub fn device_offline() -> crate::http::Error {
    crate::http::Error::conflict("device-offline", "the scanner has no remote-control tunnel open")
}

pub fn remote_control_disabled() -> crate::http::Error {
    crate::http::Error::conflict("remote-control-disabled", "remote control is switched off on this scanner")
}
