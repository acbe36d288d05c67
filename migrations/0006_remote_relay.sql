-- Remote control: when the replica holding the tunnel took up a routed session. A replica
-- token is good for one relay only.
ALTER TABLE remote_sessions ADD COLUMN relayed_at timestamptz;
