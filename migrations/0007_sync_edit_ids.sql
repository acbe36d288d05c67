-- Sync: the id of the edit that made each record's latest change, so that a push sent
-- again after its answer was lost is recognised as already applied.
ALTER TABLE sync_records ADD COLUMN last_edit_id uuid;
