-- A scan its owner disables is withdrawn: a queued job never runs, and a running attempt
-- is fenced off (its worker's next heartbeat or report finds the job no longer running)
-- and logged as withdrawn. Nothing of the history is deleted.
ALTER TABLE security_scan_jobs DROP CONSTRAINT security_scan_jobs_state_check,
    ADD CONSTRAINT security_scan_jobs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'withdrawn'));
ALTER TABLE security_scans DROP CONSTRAINT security_scans_outcome_check,
    ADD CONSTRAINT security_scans_outcome_check CHECK (outcome IN ('succeeded', 'failed', 'lost', 'withdrawn'));
