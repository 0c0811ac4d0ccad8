"""What running tasks log and stream (WorkerService.AppendRunOutput), kept as
'log' and 'stream' events of the run's log, and the reads of log lines."""

from __future__ import annotations

from services.history.sql.attempts import CURRENT_TOKEN

# The run's output counters, locked, with its current attempt's token: the
# fence and the per-run bounds read them. $1 run id, $2 namespace.
LOCK_COUNTERS = (
    "SELECT r.id, r.status, r.attempt_count, r.log_lines, r.stream_chunks, r.stream_bytes, "
    + CURRENT_TOKEN
    + " FROM runs r WHERE r.id = $1 AND r.namespace = $2 FOR UPDATE OF r"
)

# Appends events in the order given (ids follow it). $1 run id, $2 attempt,
# $3 types, $4 details as JSON text, $5 times (NULL: now).
APPEND_EVENTS = (
    "INSERT INTO run_events (run_id, type, attempt, details, at) "
    "SELECT $1, u.type, $2, u.details::jsonb, coalesce(u.at, now()) "
    "FROM unnest($3::text[], $4::text[], $5::timestamptz[]) WITH ORDINALITY AS u(type, details, at, n) "
    "ORDER BY u.n"
)

# Adds to the counters. $1 run id, $2 lines, $3 chunks, $4 chunk bytes.
COUNT_OUTPUT = (
    "UPDATE runs SET log_lines = log_lines + $2, stream_chunks = stream_chunks + $3, "
    "stream_bytes = stream_bytes + $4 WHERE id = $1"
)

# A run's log lines after an id, oldest first (index run_events_by_run).
# $1 run id, $2 after id, $3 limit.
LOG_LINES_AFTER = (
    "SELECT * FROM run_events WHERE run_id = $1 AND id > $2 AND type = 'log' ORDER BY id LIMIT $3"
)
