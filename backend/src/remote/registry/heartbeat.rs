//! The heartbeat: each replica refreshes its tunnels' rows and its sessions' counters,
//! applies what it may have missed (a lost notification, a lapse that came with time), and
//! sweeps what replicas that died left behind.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::Registry;
use super::events::{CHANNEL, Event};

impl Registry {
    /// Heartbeats, sweeps and listens until shutdown.
    pub async fn run(self) {
        let mut listener = None;
        let mut beat = tokio::time::interval(self.0.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.0.shutdown.cancelled() => break,
                _ = beat.tick() => {
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                    if let Err(error) = self.beat().await {
                        tracing::warn!(%error, "remote-control heartbeat failed");
                    }
                }
                notification = recv(&mut listener) => match notification {
                    Ok(notification) => {
                        if let Some(event) = Event::decode(notification.payload()) {
                            self.apply(&event);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "remote-control notifications lost; relying on heartbeats");
                        listener = None;
                    }
                },
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.0.db).await.ok()?;
        listener.listen(CHANNEL).await.ok()?;
        Some(listener)
    }

    async fn beat(&self) -> Result<(), sqlx::Error> {
        let db = &self.0.db;
        let stale = self.stale_after_secs();
        let (devices, tunnels): (Vec<Uuid>, Vec<Uuid>) =
            self.0.tunnels.lock().expect("tunnels lock").values().map(|t| (t.device_id, t.id)).unzip();
        // Upserted, not just refreshed: rows swept while this replica could not reach the
        // database (an outage longer than three heartbeats) come back.
        sqlx::query!(
            "INSERT INTO device_tunnels (device_id, tunnel_id, replica_id, replica_url)
             SELECT device_id, tunnel_id, $3, $4 FROM UNNEST($1::uuid[], $2::uuid[]) AS t (device_id, tunnel_id)
             ON CONFLICT (device_id) DO UPDATE SET heartbeat_at = now()
             WHERE device_tunnels.tunnel_id = EXCLUDED.tunnel_id",
            &devices,
            &tunnels,
            self.0.replica_id,
            self.0.replica_url,
        )
        .execute(db)
        .await?;
        // A tunnel whose scanner was revoked or switched off while a notification was lost.
        for device_id in not_allowed(db, &devices).await? {
            self.apply(&Event::Disabled(device_id));
        }
        let (ids, to_device, from_device) = {
            let sessions = self.0.sessions.lock().expect("sessions lock");
            let mut columns = (vec![], vec![], vec![]);
            for (id, control) in sessions.iter() {
                let (to, from) = control.counters.totals();
                columns.0.push(*id);
                columns.1.push(to);
                columns.2.push(from);
            }
            columns
        };
        let end_requested = sqlx::query_scalar!(
            r#"UPDATE remote_sessions s SET heartbeat_at = now(), bytes_to_device = c.to_device,
                 bytes_from_device = c.from_device
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[]) AS c (id, to_device, from_device)
             WHERE s.id = c.id AND s.ended_at IS NULL
             RETURNING CASE WHEN s.end_requested_at IS NOT NULL THEN s.id END AS "end_requested?""#,
            &ids,
            &to_device,
            &from_device,
        )
        .fetch_all(db)
        .await?;
        for id in end_requested.into_iter().flatten() {
            self.apply(&Event::EndSession(id));
        }
        // Sessions of workgroups whose subscription lapsed since the last beat (first: their
        // scanners' tunnels close below, and the session's reason is the lapse).
        let lapsed = sqlx::query_scalar!(
            "SELECT r.id FROM remote_sessions r LEFT JOIN subscriptions s ON s.workgroup_id = r.workgroup_id
             WHERE r.id = ANY($1) AND r.ended_at IS NULL AND NOT subscription_available(s, $2)",
            &ids,
            self.0.clock.now(),
        )
        .fetch_all(db)
        .await?;
        for id in lapsed {
            self.apply(&Event::Lapsed(id));
        }
        // Their scanners' tunnels close too (a scanner is refused a new one until renewal),
        // once no session rides them: the replica serving a session ends it first, with its
        // reason, and a tunnel closed under it would have it recorded as `tunnel_lost`.
        let lapsed_devices = sqlx::query_scalar!(
            "SELECT d.id FROM devices d LEFT JOIN subscriptions s ON s.workgroup_id = d.workgroup_id
             WHERE d.id = ANY($1) AND NOT subscription_available(s, $2)
               AND NOT EXISTS (SELECT 1 FROM remote_sessions r WHERE r.device_id = d.id AND r.ended_at IS NULL)",
            &devices,
            self.0.clock.now(),
        )
        .fetch_all(db)
        .await?;
        for device_id in lapsed_devices {
            self.apply(&Event::CutOff(device_id));
        }
        // Sessions whose user no longer may control devices in their workgroup.
        let revoked = sqlx::query_scalar!(
            "SELECT s.id FROM remote_sessions s WHERE s.id = ANY($1) AND s.ended_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM memberships m WHERE m.user_id = s.user_id AND m.workgroup_id = s.workgroup_id
                     AND 'control_devices' = ANY(m.permissions))",
            &ids,
        )
        .fetch_all(db)
        .await?;
        for id in revoked {
            self.apply(&Event::Revoked(id));
        }
        // What replicas that died left behind.
        sqlx::query!("DELETE FROM device_tunnels WHERE heartbeat_at < now() - $1 * interval '1 second'", stale)
            .execute(db)
            .await?;
        sqlx::query!(
            "UPDATE remote_sessions SET ended_at = heartbeat_at, close_reason = 'replica_lost'
             WHERE ended_at IS NULL AND heartbeat_at < now() - $1 * interval '1 second'",
            stale,
        )
        .execute(db)
        .await?;
        Ok(())
    }
}

/// Of `devices`, those that may not hold a tunnel: remote control off, or no live credential.
pub async fn not_allowed(db: &PgPool, devices: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT d.id FROM devices d WHERE d.id = ANY($1) AND (NOT d.allow_remote_control
             OR NOT EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = d.id AND c.revoked_at IS NULL))",
        devices,
    )
    .fetch_all(db)
    .await
}

async fn recv(listener: &mut Option<PgListener>) -> Result<sqlx::postgres::PgNotification, sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}
