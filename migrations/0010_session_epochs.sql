-- A user's sessions (JWTs) carry the epoch they were issued in; changing the password moves
-- the epoch on, and every earlier session stops working at its next request.
ALTER TABLE users ADD COLUMN session_epoch integer NOT NULL DEFAULT 0;

-- Attempts are counted before they are verified, and a key is refused while its count is
-- past the limit within its window: the lock is computed, no longer stored.
ALTER TABLE login_throttle DROP COLUMN locked_until;

-- A remote session whose user lost the authority that opened it (removed from the
-- workgroup, no longer allowed to control devices, password changed) ends with a reason
-- of its own.
ALTER TABLE remote_sessions DROP CONSTRAINT remote_sessions_close_reason_check;
ALTER TABLE remote_sessions ADD CONSTRAINT remote_sessions_close_reason_check CHECK (close_reason IN (
    'client_closed', 'device_closed', 'tunnel_lost', 'idle_timeout', 'ended_by_admin',
    'remote_control_disabled', 'access_revoked', 'service_shutdown', 'replica_lost'));
