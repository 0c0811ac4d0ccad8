-- Cairn schema, version 14 (history's runs): a trigger's request id
-- (cairn.v1.TriggerRunRequest.request_id). A trigger sent again with it
-- answers the run it made instead of making a second one. Unique per namespace
-- among the runs that carry one (the SDK and the CLI set one on every trigger
-- without an idempotency key), so the hot path's insert finds a repeat in its
-- own statement (ON CONFLICT DO NOTHING); history answers the run for 24 hours
-- and then forgets the id (clears it) when it is sent again.
ALTER TABLE runs ADD COLUMN request_id text;
CREATE UNIQUE INDEX runs_request_id ON runs (namespace, request_id) WHERE request_id IS NOT NULL;
