-- Cairn schema, version 9: each run keeps the W3C trace context it was triggered
-- in (TriggerOptions.traceparent, or one history made for it), handed to the
-- worker with every attempt (AttemptAssignment.traceparent); Run.trace_id is its
-- trace id. '' only for runs made before this version. A constant default adds
-- the column without rewriting the table.
ALTER TABLE runs ADD COLUMN traceparent text NOT NULL DEFAULT '';
