-- Security (docs/SECURITY.md). Never edit once landed.
-- A worker id is bound to the CURVE public key (Z85) that first registered
-- it; '' for workers of an open (no CURVE) scheduler.
ALTER TABLE workers ADD COLUMN curve_key TEXT NOT NULL DEFAULT '';
-- Rows of lost workers expire after a retention period (oldest first).
CREATE INDEX workers_state_seen ON workers(state, last_seen_ms);
-- One live job per work_dir: submit looks the directory up.
CREATE INDEX jobs_work_dir ON jobs(work_dir);
