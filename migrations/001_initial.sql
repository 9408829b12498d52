-- lema scheduler schema, version 1. Never edit once landed: add 002_*.sql.
CREATE TABLE jobs (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
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
CREATE INDEX jobs_state ON jobs(state, id);

CREATE TABLE stages (
  id                INTEGER PRIMARY KEY,
  job_id            INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  kind              TEXT NOT NULL CHECK (kind IN ('dataset','train','eval','merge')),
  state             TEXT NOT NULL CHECK (state IN ('pending','queued','assigned','running','retrying',
                                                   'succeeded','failed','cancelled')),
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
-- The run queue: runnable stages by priority, then age.
CREATE INDEX stages_runnable ON stages(priority DESC, job_id, id) WHERE state IN ('queued','retrying');
CREATE INDEX stages_job ON stages(job_id);

CREATE TABLE stage_deps (
  stage_id    INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  depends_on  INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  PRIMARY KEY (stage_id, depends_on)
);
CREATE INDEX stage_deps_rev ON stage_deps(depends_on);

CREATE TABLE attempts (
  id          INTEGER PRIMARY KEY,
  stage_id    INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  worker_id   TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('running','succeeded','failed','lost','cancelled')),
  resume_checkpoint TEXT,
  error       TEXT,
  started_ms  INTEGER NOT NULL,
  ended_ms    INTEGER,
  UNIQUE (stage_id, attempt)
);

-- One row per assigned stage; heartbeats move expires_ms forward.
CREATE TABLE leases (
  stage_id    INTEGER PRIMARY KEY REFERENCES stages(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  worker_id   TEXT NOT NULL,
  expires_ms  INTEGER NOT NULL
);
CREATE INDEX leases_expiry ON leases(expires_ms);
CREATE INDEX leases_worker ON leases(worker_id);

CREATE TABLE checkpoints (
  id          INTEGER PRIMARY KEY,
  stage_id    INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  step        INTEGER NOT NULL,
  path        TEXT NOT NULL,
  sha256      TEXT NOT NULL,
  created_ms  INTEGER NOT NULL
);
CREATE INDEX checkpoints_stage ON checkpoints(stage_id, step);

CREATE TABLE workers (
  id             TEXT PRIMARY KEY,
  host           TEXT NOT NULL DEFAULT '',
  gpus           INTEGER NOT NULL DEFAULT 0,
  vram_bytes     INTEGER NOT NULL DEFAULT 0,
  cpu_only       INTEGER NOT NULL DEFAULT 0,
  version        TEXT NOT NULL DEFAULT '',
  state          TEXT NOT NULL CHECK (state IN ('online','lost')),
  first_seen_ms  INTEGER NOT NULL,
  last_seen_ms   INTEGER NOT NULL
);

CREATE TABLE events (
  id          INTEGER PRIMARY KEY,
  job_id      INTEGER REFERENCES jobs(id) ON DELETE CASCADE,
  stage_id    INTEGER,
  attempt     INTEGER,
  level       TEXT NOT NULL,
  line        TEXT NOT NULL,
  created_ms  INTEGER NOT NULL
);
CREATE INDEX events_job ON events(job_id, id);

CREATE TABLE metrics (
  id            INTEGER PRIMARY KEY,
  stage_id      INTEGER NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
  attempt       INTEGER NOT NULL,
  step          INTEGER NOT NULL,
  total_steps   INTEGER,
  loss          REAL,
  lr            REAL,
  tokens_per_s  REAL,
  memory_bytes  INTEGER,
  created_ms    INTEGER NOT NULL
);
CREATE INDEX metrics_stage ON metrics(stage_id, step);
