-- What a successful scan found that the previous successful scan of the same device and
-- kind did not (new ports, new hosts) and what it no longer found (gone): computed once,
-- when the scan completes, so the tab and the history show it without comparing scans on
-- every read. NULL for a device's first scan of a kind.
ALTER TABLE security_scans ADD COLUMN changes jsonb;
