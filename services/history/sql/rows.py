"""One definition of each row write that both the single-statement hot path
and the general transactions make. Each is a fragment composed (at import) into
the statements of the other modules here, so the two paths cannot drift:

- a data-modifying CTE body reads its rows from the CTE named in its comment
  (``run``, ``ended``, ``current``, ``attempt``) and takes its values from
  fixed parameter positions, which every statement using it keeps;
- the column lists of run_events, timers and steps are written once, and the
  single-row statements (EVENT, SET_TIMER) are those lists with VALUES."""

from __future__ import annotations

# ---- runs ------------------------------------------------------------------------

# The new run, from the `task` CTE (queue, retry, max_duration_ms). $1 id,
# $2 namespace, $3 task_id, $4 input, $5 encoding, $6 idempotency_key,
# $7 parent_run_id, $8 priority, $9 tags, $10 metadata, $11 max_duration_ms
# (NULL: the task's), $12 schedule_id, $13 delay seconds (> 0: delayed),
# $14 ttl_ms, $15 concurrency key, $16 replay_of (the replayed run, or NULL),
# $17 traceparent (W3C trace context, cairn/tracing.py; always a valid one),
# $18 request_id (or NULL). No row when the idempotency key is taken for the
# task or the request id in the namespace (any unique index: the conflict has
# no target), so a trigger sent again makes nothing; the caller then looks the
# run up (trigger.create_run), which also forgets a request id past its window.
INSERT_RUN = """
run AS (
    INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, idempotency_key,
                      retry, parent_run_id, priority, tags, metadata, ttl_ms, max_duration_ms, schedule_id,
                      concurrency_key, next_attempt_at, replay_of, traceparent, request_id)
    SELECT $1, $2, $3, task.queue, CASE WHEN $13::float8 > 0 THEN 'delayed' ELSE 'queued' END, $4, $5, $6,
           task.retry, $7, $8, $9, $10, $14, coalesce($11, task.max_duration_ms), $12, $15,
           CASE WHEN $13::float8 > 0 THEN now() + make_interval(secs => $13) END, $16, $17, $18 FROM task
    ON CONFLICT DO NOTHING RETURNING *)"""

# The ending of the run in `current` (locked): terminal status, output, error,
# and the execution time of the attempt ended by the `attempt` CTE. $6 status,
# $7 output, $8 output encoding, $9 error.
END_RUN = """
ended AS (
    UPDATE runs r SET status = $6, output = $7, output_encoding = $8, error = $9,
        finished_at = now(), updated_at = now(), next_attempt_at = NULL,
        exec_ms = r.exec_ms + coalesce((SELECT spent FROM attempt), 0)
    FROM current WHERE r.id = current.id RETURNING r.*)"""

# ---- attempts --------------------------------------------------------------------

# Closes attempt $2 of run $1 (when `current` has a row and $3 is set) with
# status $3, error $4 and retry delay $5 (ms); returns its duration as `spent`.
END_ATTEMPT = """
attempt AS (
    UPDATE attempts SET status = $3, finished_at = now(), error = $4, retry_delay_ms = $5
    WHERE run_id = $1 AND number = $2 AND $3::text IS NOT NULL AND EXISTS (SELECT 1 FROM current)
    RETURNING (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS spent)"""

# ---- queue entries ---------------------------------------------------------------

# Puts each queued row of `run` in the ready set.
ENQUEUE = """
entry AS (
    INSERT INTO queue_entries (run_id, namespace, task_id, queue, priority, concurrency_key)
    SELECT id, namespace, task_id, queue, priority, concurrency_key FROM run WHERE status = 'queued'
    ON CONFLICT (run_id) DO NOTHING)"""

# ---- events ----------------------------------------------------------------------

# Followed by VALUES or a SELECT of (run_id, type, attempt, details).
EVENT_COLUMNS = "INSERT INTO run_events (run_id, type, attempt, details) "

# The 'triggered' event of each row of `run`. $6 idempotency_key, $7 parent_run_id,
# $12 schedule_id, $16 replay_of.
LOG_TRIGGERED = (
    "\nlogged AS (\n    "
    + EVENT_COLUMNS
    + """
    SELECT id, 'triggered', 0, jsonb_build_object('idempotency_key', $6::text,
           'parent_run_id', $7::uuid::text, 'schedule_id', $12::text, 'replay_of', $16::uuid::text) FROM run)"""
)

# The terminal event of each row of `ended`. $10 details (jsonb).
LOG_ENDED = (
    "\nlogged AS (\n    " + EVENT_COLUMNS + "\n    SELECT id, status, attempt_count, $10::jsonb FROM ended)"
)

# ---- timers ----------------------------------------------------------------------

# Followed by VALUES or a SELECT of (run_id, kind, attempt, due_at), then TIMER_UPSERT.
TIMER_COLUMNS = "INSERT INTO timers (run_id, kind, attempt, due_at) "
TIMER_UPSERT = (
    " ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at"
)

# Tells a waiting parent of each row of `ended` to look at its children: only
# the parent's timer row is touched, never the parent run, so a child
# transaction holds no lock that a parent transaction could wait on.
SIGNAL_PARENT = (
    "\nparent AS (\n    "
    + TIMER_COLUMNS
    + "\n    SELECT parent_run_id, 'signal', 0, now() FROM ended WHERE parent_run_id IS NOT NULL\n   "
    + TIMER_UPSERT
    + ")"
)

# ---- steps -----------------------------------------------------------------------

# Followed by VALUES or a SELECT of the columns, then STEP_ONCE.
STEP_COLUMNS = (
    "INSERT INTO steps (run_id, position, name, status, output, output_encoding, error, attempt, tries, "
    "try_errors) "
)
STEP_ONCE = " ON CONFLICT (run_id, position) DO NOTHING"
