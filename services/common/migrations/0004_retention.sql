-- Cairn schema, version 4: retention of finished runs (services/history/retention.py).

-- history: the pruner's pick, oldest finished runs first. Partial: a run gets
-- its one entry when it ends (an UPDATE that changes indexed columns anyway), so
-- triggers, claims and step records pay nothing for it. IF NOT EXISTS: on a
-- large existing table an operator may build it first with
-- CREATE INDEX CONCURRENTLY (same name and definition) to avoid the write lock.
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- history: the wait tokens a run made, deleted with it.
CREATE INDEX IF NOT EXISTS wait_tokens_by_run ON wait_tokens (run_id) WHERE run_id IS NOT NULL;
