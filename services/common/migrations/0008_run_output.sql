-- Cairn schema, version 8: what a run's tasks logged and streamed
-- (WorkerService.AppendRunOutput) is kept in its event log as 'log' and
-- 'stream' events; these counters bound them per run (cairn/limits.py) without
-- counting the log on each append. Columns with constant defaults are added
-- without rewriting the table.
ALTER TABLE runs
    ADD COLUMN log_lines int NOT NULL DEFAULT 0,
    ADD COLUMN stream_chunks int NOT NULL DEFAULT 0,
    ADD COLUMN stream_bytes bigint NOT NULL DEFAULT 0;
