-- Remote control: which replica holds each device's tunnel, and the audit of every session.

-- The registry of connected devices. One row per device: its newest tunnel wins. A replica
-- refreshes `heartbeat_at` of its rows; a row whose heartbeat is stale belongs to a replica
-- that died and counts as offline (and is swept).
CREATE TABLE device_tunnels (
    device_id       uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    tunnel_id       uuid NOT NULL,
    replica_id      uuid NOT NULL,
    -- Where other replicas reach this one to route a session to the tunnel.
    replica_url     text NOT NULL,
    remote_address  inet,
    connected_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_tunnels_replica_idx ON device_tunnels (replica_id);

CREATE TABLE remote_sessions (
    id                 uuid PRIMARY KEY,
    workgroup_id       uuid NOT NULL,
    device_id          uuid NOT NULL,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_address     inet,
    -- The replica serving the user's side (it counts the bytes and writes the end).
    replica_id         uuid NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    heartbeat_at       timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    bytes_to_device    bigint NOT NULL DEFAULT 0,
    bytes_from_device  bigint NOT NULL DEFAULT 0,
    close_reason       text CHECK (close_reason IN (
        'client_closed', 'device_closed', 'tunnel_lost', 'idle_timeout', 'ended_by_admin',
        'remote_control_disabled', 'service_shutdown', 'replica_lost')),
    end_requested_at   timestamptz,
    end_requested_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT remote_sessions_device_fkey FOREIGN KEY (workgroup_id, device_id)
        REFERENCES devices (workgroup_id, id) ON DELETE CASCADE,
    CONSTRAINT remote_sessions_ended CHECK ((ended_at IS NULL) = (close_reason IS NULL))
);
CREATE INDEX remote_sessions_workgroup_idx ON remote_sessions (workgroup_id, started_at DESC, id DESC);
CREATE INDEX remote_sessions_active_idx ON remote_sessions (replica_id) WHERE ended_at IS NULL;
