-- lema scheduler schema, version 6: crash counts (issue 19). A stage whose
-- process crashed (a signal, an exit without a result: the worker's FAILED
-- says crashed) counts it here; at max_crashes (the spec's [retry]
-- max_crashes) the job fails with that reason instead of the stage going to
-- worker after worker. Never edit once landed.
ALTER TABLE stages ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stages ADD COLUMN max_crashes INTEGER NOT NULL DEFAULT 2;
