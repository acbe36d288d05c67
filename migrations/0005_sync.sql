-- Reference-scan and load-detail-list sync between the scanners of a site.

-- Each site's revision counter: every change takes the next one while holding this row's
-- lock, so revisions commit in order and a reader never skips one.
CREATE TABLE site_sync_revisions (
    site_id       uuid PRIMARY KEY,
    workgroup_id  uuid NOT NULL,
    revision      bigint NOT NULL DEFAULT 0,
    FOREIGN KEY (workgroup_id, site_id) REFERENCES sites (workgroup_id, id) ON DELETE CASCADE
);

-- Records of both collections. `data` holds a record's fields; a reference scan's profile
-- heights are kept apart in the load profiles' binary form. Deletes leave a tombstone.
CREATE TABLE sync_records (
    site_id            uuid NOT NULL,
    collection         text NOT NULL CHECK (collection IN ('reference-scans', 'load-lists')),
    id                 uuid NOT NULL,
    workgroup_id       uuid NOT NULL,
    revision           bigint NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    data               jsonb,
    heights            bytea COMPRESSION lz4,
    changed_by_device  uuid REFERENCES devices (id) ON DELETE SET NULL,
    changed_by_user    uuid REFERENCES users (id) ON DELETE SET NULL,
    changed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, collection, id),
    FOREIGN KEY (workgroup_id, site_id) REFERENCES sites (workgroup_id, id) ON DELETE CASCADE,
    CHECK (deleted = (data IS NULL))
);
CREATE INDEX sync_records_changes_idx ON sync_records (site_id, collection, revision);

-- When each scanner last pulled (and up to which revision) and last pushed.
CREATE TABLE sync_devices (
    device_id       uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    collection      text NOT NULL,
    last_pull_at    timestamptz,
    last_revision   bigint,
    last_push_at    timestamptz,
    PRIMARY KEY (device_id, collection)
);
