//! What replicas tell each other: ending a session or cutting a scanner off is applied
//! here at once and broadcast with `NOTIFY`, so it takes effect on whichever replica holds it.

use uuid::Uuid;

use super::Registry;
use crate::remote::CloseReason;

/// The `NOTIFY` channel replicas tell each other about sessions and scanners on.
pub(super) const CHANNEL: &str = "myscanner_remote";

/// What replicas tell each other.
pub(super) enum Event {
    EndSession(Uuid),
    /// The session's user lost the authority that opened it.
    Revoked(Uuid),
    /// Remote control switched off on the scanner: its sessions end, its tunnel closes.
    Disabled(Uuid),
    /// The scanner's credential was revoked: its tunnel closes.
    CutOff(Uuid),
    /// The session's workgroup no longer has an available subscription.
    Lapsed(Uuid),
}

impl Event {
    fn encode(&self) -> String {
        match self {
            Event::EndSession(id) => format!("end:{id}"),
            Event::Revoked(id) => format!("revoked:{id}"),
            Event::Disabled(id) => format!("disabled:{id}"),
            Event::CutOff(id) => format!("cutoff:{id}"),
            Event::Lapsed(id) => format!("lapsed:{id}"),
        }
    }

    pub(super) fn decode(payload: &str) -> Option<Event> {
        let (kind, id) = payload.split_once(':')?;
        let id = id.parse().ok()?;
        match kind {
            "end" => Some(Event::EndSession(id)),
            "revoked" => Some(Event::Revoked(id)),
            "disabled" => Some(Event::Disabled(id)),
            "cutoff" => Some(Event::CutOff(id)),
            "lapsed" => Some(Event::Lapsed(id)),
            _ => None,
        }
    }
}

impl Registry {
    /// Ends a session wherever it is served.
    pub async fn end_session(&self, session_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::EndSession(session_id)).await
    }

    /// `user_id` lost the authority to control devices in `workgroup_id` (in every
    /// workgroup with `None`): their sessions there end, wherever they are served. The
    /// heartbeat finds any this misses (a session opened meanwhile, a lost notification).
    pub async fn authority_lost(&self, user_id: Uuid, workgroup_id: Option<Uuid>) -> Result<(), sqlx::Error> {
        let sessions = sqlx::query_scalar!(
            "SELECT id FROM remote_sessions
             WHERE user_id = $1 AND ($2::uuid IS NULL OR workgroup_id = $2) AND ended_at IS NULL",
            user_id,
            workgroup_id,
        )
        .fetch_all(&self.0.db)
        .await?;
        for session_id in sessions {
            self.broadcast(Event::Revoked(session_id)).await?;
        }
        Ok(())
    }

    /// The workgroup's subscription stopped providing cloud features (cancelled, or changed
    /// to a lapsed period): its sessions end, wherever they are served. A lapse that comes
    /// with time alone is found by the heartbeat.
    pub async fn subscription_ended(&self, workgroup_id: Uuid) -> Result<(), sqlx::Error> {
        let sessions = sqlx::query_scalar!(
            "SELECT id FROM remote_sessions WHERE workgroup_id = $1 AND ended_at IS NULL",
            workgroup_id,
        )
        .fetch_all(&self.0.db)
        .await?;
        for session_id in sessions {
            self.broadcast(Event::Lapsed(session_id)).await?;
        }
        Ok(())
    }

    /// Remote control was switched off on the scanner: refuse from now on, end what runs.
    pub async fn remote_control_disabled(&self, device_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::Disabled(device_id)).await
    }

    /// The scanner's credential was revoked: its tunnel closes wherever it is held.
    pub async fn cut_off(&self, device_id: Uuid) -> Result<(), sqlx::Error> {
        self.broadcast(Event::CutOff(device_id)).await
    }

    /// Applied here at once, and on every replica through `NOTIFY`.
    async fn broadcast(&self, event: Event) -> Result<(), sqlx::Error> {
        self.apply(&event);
        sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, event.encode()).execute(&self.0.db).await?;
        Ok(())
    }

    pub(super) fn apply(&self, event: &Event) {
        let end_sessions = |device_id: Uuid, reason: CloseReason| {
            for control in self.0.sessions.lock().expect("sessions lock").values() {
                if control.device_id == device_id {
                    control.end(reason);
                }
            }
        };
        let end_session = |id: Uuid, reason: CloseReason| {
            if let Some(control) = self.0.sessions.lock().expect("sessions lock").get(&id) {
                control.end(reason);
            }
        };
        let close_tunnel = |device_id: Uuid| {
            if let Some(tunnel) = self.0.tunnels.lock().expect("tunnels lock").get(&device_id) {
                tunnel.closed.cancel();
            }
        };
        match *event {
            Event::EndSession(id) => end_session(id, CloseReason::EndedByAdmin),
            Event::Revoked(id) => end_session(id, CloseReason::AccessRevoked),
            Event::Lapsed(id) => end_session(id, CloseReason::SubscriptionInactive),
            Event::Disabled(device_id) => {
                end_sessions(device_id, CloseReason::RemoteControlDisabled);
                close_tunnel(device_id);
            }
            Event::CutOff(device_id) => close_tunnel(device_id),
        }
    }
}
