-- Workgroup Security Services: per-device scan settings, the scan queue, and the
-- security_scans history of every finished attempt with its findings.

-- Whether the weekly scan of a kind is enabled for a device. No row: disabled.
CREATE TABLE security_scan_settings (
    device_id     uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('internal', 'external')),
    workgroup_id  uuid NOT NULL,
    enabled       boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, kind),
    FOREIGN KEY (workgroup_id, device_id) REFERENCES devices (workgroup_id, id) ON DELETE CASCADE
);
CREATE INDEX security_scan_settings_enabled_idx ON security_scan_settings (kind) WHERE enabled;

-- Queue order: a scan enqueued later runs later. Run-now scans therefore start at the
-- back of the queue, behind every weekly scan still waiting.
CREATE SEQUENCE security_queue_seq AS bigint;

-- One scan to run, weekly or run-now, through its attempts. A worker claims a queued job
-- (FOR UPDATE SKIP LOCKED) into a lease it renews with heartbeats; `attempt` is the
-- fencing token: a worker presumed dead (lease expired) cannot write for an attempt that
-- has been superseded.
CREATE TABLE security_scan_jobs (
    id                uuid PRIMARY KEY,
    workgroup_id      uuid NOT NULL,
    device_id         uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('internal', 'external')),
    origin            text NOT NULL CHECK (origin IN ('weekly', 'run_now')),
    scheduled_for     timestamptz,       -- the weekly slot; NULL for run-now
    queue_position    bigint NOT NULL DEFAULT nextval('security_queue_seq'),
    state             text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempt           integer NOT NULL DEFAULT 0,   -- attempts started so far
    max_attempts      integer NOT NULL DEFAULT 4,   -- the first try and three retries
    not_before        timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    lease_owner       text,
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    progress          real,              -- 0–1 while running
    last_error        text,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    FOREIGN KEY (workgroup_id, device_id) REFERENCES devices (workgroup_id, id) ON DELETE CASCADE,
    -- Exactly one weekly job per device, kind and Saturday, whoever enqueues it.
    CONSTRAINT security_scan_jobs_weekly_key UNIQUE (device_id, kind, scheduled_for)
);
-- At most one waiting or running scan per device and kind: run-now is refused meanwhile.
CREATE UNIQUE INDEX security_scan_jobs_active_key ON security_scan_jobs (device_id, kind)
    WHERE state IN ('queued', 'running');
CREATE INDEX security_scan_jobs_queue_idx ON security_scan_jobs (kind, queue_position) WHERE state = 'queued';
CREATE INDEX security_scan_jobs_lease_idx ON security_scan_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX security_scan_jobs_device_idx ON security_scan_jobs (workgroup_id, device_id, kind, enqueued_at DESC);

-- Every finished attempt: succeeded, failed (with the error) or lost (its worker stopped
-- renewing the lease).
CREATE TABLE security_scans (
    id             uuid PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES security_scan_jobs (id) ON DELETE CASCADE,
    workgroup_id   uuid NOT NULL,
    device_id      uuid NOT NULL,
    kind           text NOT NULL,
    attempt        integer NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'lost')),
    target         inet,                 -- external: the address scanned
    started_at     timestamptz,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    error          text,
    open_ports     integer,              -- external
    ids_suspected  boolean,              -- external
    ids_reasons    text[],
    hosts_found    integer,              -- internal
    CONSTRAINT security_scans_attempt_key UNIQUE (job_id, attempt)
);
CREATE INDEX security_scans_search_idx ON security_scans (workgroup_id, finished_at, id);
CREATE INDEX security_scans_device_idx ON security_scans (workgroup_id, device_id, kind, finished_at DESC);

-- What a successful scan found: an open port (external) or a host (internal).
CREATE TABLE security_scan_findings (
    id            uuid PRIMARY KEY,
    scan_id       uuid NOT NULL REFERENCES security_scans (id) ON DELETE CASCADE,
    workgroup_id  uuid NOT NULL,
    device_id     uuid NOT NULL,
    kind          text NOT NULL,
    seen_at       timestamptz NOT NULL,
    -- external
    port          integer CHECK (port BETWEEN 1 AND 65535),
    protocol      text,
    state         text,
    service       text,
    banner        text,
    -- internal
    ip            inet,
    mac           macaddr,
    description   text
);
CREATE INDEX security_scan_findings_scan_idx ON security_scan_findings (scan_id);
CREATE INDEX security_scan_findings_search_idx ON security_scan_findings (workgroup_id, seen_at, id);
CREATE INDEX security_scan_findings_port_idx ON security_scan_findings (workgroup_id, port) WHERE port IS NOT NULL;
CREATE INDEX security_scan_findings_ip_idx ON security_scan_findings (workgroup_id, ip) WHERE ip IS NOT NULL;
CREATE INDEX security_scan_findings_mac_idx ON security_scan_findings (workgroup_id, mac) WHERE mac IS NOT NULL;
