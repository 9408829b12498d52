-- lema scheduler schema, version 2: the same tables, with the CHECK
-- constraints written as OR chains instead of `x IN ('a','b',...)`.
-- SQLite evaluates an IN list in a CHECK by building a temporary b-tree for
-- every row it writes; on the assignment path (stages, attempts, jobs) that
-- was about a third of the scheduler's CPU (docs/SCHEDULER.md, Performance).
-- Tables are rebuilt the SQLite way (create new, copy, drop, rename); the
-- migration runner turns foreign keys off around it and runs
-- foreign_key_check before committing. Never edit once landed.

CREATE TABLE jobs_v2 (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state = 'queued' OR state = 'running' OR state = 'succeeded' OR
                                     state = 'failed' OR state = 'cancelled'),
  priority      INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL,
  work_dir      TEXT NOT NULL,
  spec_toml     TEXT NOT NULL,   -- as submitted
  spec_json     TEXT NOT NULL,   -- normalised (JobSpec::to_json)
  error         TEXT,
  created_ms    INTEGER NOT NULL,
  updated_ms    INTEGER NOT NULL,
  finished_ms   INTEGER
);
INSERT INTO jobs_v2 (id, name, state, priority, max_attempts, work_dir, spec_toml, spec_json, error, created_ms,
                     updated_ms, finished_ms)
  SELECT id, name, state, priority, max_attempts, work_dir, spec_toml, spec_json, error, created_ms, updated_ms,
         finished_ms FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_state ON jobs(state, id);

CREATE TABLE stages_v2 (
  id                INTEGER PRIMARY KEY,
  job_id            INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  kind              TEXT NOT NULL CHECK (kind = 'dataset' OR kind = 'train' OR kind = 'eval' OR kind = 'merge'),
  state             TEXT NOT NULL CHECK (state = 'pending' OR state = 'queued' OR state = 'assigned' OR
                                         state = 'running' OR state = 'retrying' OR state = 'succeeded' OR
                                         state = 'failed' OR state = 'cancelled'),
  priority          INTEGER NOT NULL DEFAULT 0,  -- copied from the job: the queue index needs it
  attempt           INTEGER NOT NULL DEFAULT 0,  -- attempts started so far
  max_attempts      INTEGER NOT NULL,
  gpu_memory_bytes  INTEGER NOT NULL DEFAULT 0,
  cpu_ok            INTEGER NOT NULL DEFAULT 1,
  not_before_ms     INTEGER NOT NULL DEFAULT 0,  -- retry backoff
  result_json       TEXT,
  error             TEXT,
  created_ms        INTEGER NOT NULL,
  updated_ms        INTEGER NOT NULL,
  UNIQUE (job_id, kind)
);
INSERT INTO stages_v2 (id, job_id, kind, state, priority, attempt, max_attempts, gpu_memory_bytes, cpu_ok,
                       not_before_ms, result_json, error, created_ms, updated_ms)
  SELECT id, job_id, kind, state, priority, attempt, max_attempts, gpu_memory_bytes, cpu_ok, not_before_ms,
         result_json, error, created_ms, updated_ms FROM stages;
DROP TABLE stages;
ALTER TABLE stages_v2 RENAME TO stages;
-- The run queue: runnable stages by priority, then age.
CREATE INDEX stages_runnable ON stages(priority DESC, job_id, id) WHERE state IN ('queued','retrying');
CREATE INDEX stages_job ON stages(job_id);

CREATE TABLE attempts_v2 (
  id          INTEGER PRIMARY KEY,
  stage_id    INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  worker_id   TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state = 'running' OR state = 'succeeded' OR state = 'failed' OR state = 'lost' OR
                                   state = 'cancelled'),
  resume_checkpoint TEXT,
  error       TEXT,
  started_ms  INTEGER NOT NULL,
  ended_ms    INTEGER,
  UNIQUE (stage_id, attempt)
);
INSERT INTO attempts_v2 (id, stage_id, attempt, worker_id, state, resume_checkpoint, error, started_ms, ended_ms)
  SELECT id, stage_id, attempt, worker_id, state, resume_checkpoint, error, started_ms, ended_ms FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_v2 RENAME TO attempts;

CREATE TABLE workers_v2 (
  id             TEXT PRIMARY KEY,
  host           TEXT NOT NULL DEFAULT '',
  gpus           INTEGER NOT NULL DEFAULT 0,
  vram_bytes     INTEGER NOT NULL DEFAULT 0,
  cpu_only       INTEGER NOT NULL DEFAULT 0,
  version        TEXT NOT NULL DEFAULT '',
  state          TEXT NOT NULL CHECK (state = 'online' OR state = 'lost'),
  first_seen_ms  INTEGER NOT NULL,
  last_seen_ms   INTEGER NOT NULL
);
INSERT INTO workers_v2 (id, host, gpus, vram_bytes, cpu_only, version, state, first_seen_ms, last_seen_ms)
  SELECT id, host, gpus, vram_bytes, cpu_only, version, state, first_seen_ms, last_seen_ms FROM workers;
DROP TABLE workers;
ALTER TABLE workers_v2 RENAME TO workers;
