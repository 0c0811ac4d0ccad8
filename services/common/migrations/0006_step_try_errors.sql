-- Cairn schema, version 6: a step keeps the errors of its failed in-place tries
-- (RecordStepRequest.try_errors: at most MAX_TRY_ERRORS ErrorInfo objects, oldest
-- first), returned as Step.try_errors. A constant default adds the column
-- without rewriting the table.
ALTER TABLE steps ADD COLUMN try_errors jsonb NOT NULL DEFAULT '[]';
