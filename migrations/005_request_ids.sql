-- lema scheduler schema, version 5: SUBMIT's client-chosen request id (docs/PROTOCOL.md). Never edit once landed.
-- A SUBMIT that arrives twice (a client's retry, or ZeroMQ re-sending the
-- queued messages of a socket kept open across a scheduler restart) carries
-- the same id and returns the first job instead of making another.
ALTER TABLE jobs ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX jobs_request_id ON jobs(request_id) WHERE request_id IS NOT NULL;
