-- lema scheduler schema, version 4: the stage kind 'export' (a GGUF file
-- after merge, a job spec's [export] gguf; docs/EXPORT.md). SQLite cannot
-- alter a CHECK, so the stages table is rebuilt the SQLite way (create new,
-- copy, drop, rename); the migration runner turns foreign keys off around it
-- and runs foreign_key_check before committing. Never edit once landed.

CREATE TABLE stages_v4 (
  id                INTEGER PRIMARY KEY,
  job_id            INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  kind              TEXT NOT NULL CHECK (kind = 'dataset' OR kind = 'train' OR kind = 'eval' OR kind = 'merge' OR
                                         kind = 'export'),
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
INSERT INTO stages_v4 (id, job_id, kind, state, priority, attempt, max_attempts, gpu_memory_bytes, cpu_ok,
                       not_before_ms, result_json, error, created_ms, updated_ms)
  SELECT id, job_id, kind, state, priority, attempt, max_attempts, gpu_memory_bytes, cpu_ok, not_before_ms,
         result_json, error, created_ms, updated_ms FROM stages;
DROP TABLE stages;
ALTER TABLE stages_v4 RENAME TO stages;
-- The run queue: runnable stages by priority, then age.
CREATE INDEX stages_runnable ON stages(priority DESC, job_id, id) WHERE state IN ('queued','retrying');
CREATE INDEX stages_job ON stages(job_id);
