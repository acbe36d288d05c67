-- Subscriptions: MyScanner's cloud features need one. Each workgroup has at most one, its
-- current period; every change to it is kept in subscription_changes.
--
-- The status is never stored: subscription_status() derives it from the dates at the moment
-- asked (the service passes its clock), so no job has to run for a subscription to lapse,
-- and every replica agrees.

CREATE TABLE subscriptions (
    workgroup_id  uuid PRIMARY KEY REFERENCES workgroups (id) ON DELETE CASCADE,
    plan          text NOT NULL CHECK (length(plan) BETWEEN 1 AND 200),
    -- How many scanners (devices holding a live credential) it covers.
    scanners      integer NOT NULL CHECK (scanners BETWEEN 0 AND 100000),
    trial         boolean NOT NULL DEFAULT false,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    -- Days after period_end during which everything still works.
    grace_days    integer NOT NULL CHECK (grace_days BETWEEN 0 AND 365),
    cancelled_at  timestamptz,
    -- By the service's clock, as the history's changed_at.
    updated_at    timestamptz NOT NULL,
    CONSTRAINT subscriptions_period CHECK (period_end > period_start)
);

-- 'none' (no subscription row: pass the NULL row of a LEFT JOIN), 'cancelled', 'trial' or
-- 'active' before period_end, 'grace' for grace_days after it, then 'lapsed'. A period
-- counts from when it was given, so period_start does not enter into it.
CREATE FUNCTION subscription_status(s subscriptions, at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN s.workgroup_id IS NULL THEN 'none'
        WHEN s.cancelled_at IS NOT NULL AND s.cancelled_at <= at THEN 'cancelled'
        WHEN at < s.period_end THEN CASE WHEN s.trial THEN 'trial' ELSE 'active' END
        WHEN at < s.period_end + s.grace_days * interval '86400 seconds' THEN 'grace'
        ELSE 'lapsed'
    END
$$;

-- Whether the cloud features (measurement reads, remote control, sync, run-now scans,
-- weekly scans) are available at `at`.
CREATE FUNCTION subscription_available(s subscriptions, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT subscription_status(s, at) IN ('trial', 'active', 'grace')
$$;

-- Who changed what, when: the terms before and after, as JSON (NULL before a creation).
CREATE TABLE subscription_changes (
    id            uuid PRIMARY KEY,
    workgroup_id  uuid NOT NULL REFERENCES workgroups (id) ON DELETE CASCADE,
    action        text NOT NULL CHECK (action IN ('created', 'changed', 'renewed', 'cancelled')),
    -- The operator's account (NULL: the `myscanner admin` command, or a deleted account)
    -- and how they were known at the time.
    changed_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    actor         text NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    before        jsonb,
    after         jsonb NOT NULL
);
CREATE INDEX subscription_changes_workgroup_idx ON subscription_changes (workgroup_id, id);

ALTER TABLE remote_sessions DROP CONSTRAINT remote_sessions_close_reason_check;
ALTER TABLE remote_sessions ADD CONSTRAINT remote_sessions_close_reason_check CHECK (close_reason IN (
    'client_closed', 'device_closed', 'tunnel_lost', 'idle_timeout', 'ended_by_admin',
    'remote_control_disabled', 'access_revoked', 'service_shutdown', 'replica_lost',
    'subscription_inactive'));
