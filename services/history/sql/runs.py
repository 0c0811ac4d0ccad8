"""Creating, locking, requeuing and ending runs, and the rows every transition
shares (events, timers). The row writes come from rows.py, so the hot
statements and the general transactions write each row one way."""

from __future__ import annotations

from services.history.sql.rows import (
    END_ATTEMPT,
    END_RUN,
    ENQUEUE,
    EVENT_COLUMNS,
    INSERT_RUN,
    LOG_ENDED,
    LOG_TRIGGERED,
    SIGNAL_PARENT,
    TIMER_COLUMNS,
    TIMER_UPSERT,
)

# ---- triggering ------------------------------------------------------------------

# The hot path's trigger: a run with no delay, ttl or concurrency key, for a
# queue without max_depth: the run, its event and its queue entry; no row when
# the task is unknown, the queue has a depth limit, the idempotency key or the
# request id is taken, or the parent ($7, when given) is no run of the namespace
# (the general path then says which). Parameters as rows.INSERT_RUN ($13 0, $14
# NULL, $15 '', $16 to $18 as given).
TRIGGER = (
    """WITH task AS (
    SELECT queue, retry, max_duration_ms FROM tasks t WHERE namespace = $2 AND task_id = $3
    AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.namespace = $2 AND q.name = t.queue
                    AND q.max_depth > 0)
    AND ($7::uuid IS NULL OR EXISTS (SELECT 1 FROM runs p WHERE p.id = $7 AND p.namespace = $2))),"""
    + INSERT_RUN
    + ","
    + LOG_TRIGGERED
    + ","
    + ENQUEUE
    + "\nSELECT * FROM run"
)

# The general trigger, after the caller checked the task, the idempotency key
# and the queue's depth: the run, its event and (unless delayed) its queue
# entry. Parameters as rows.INSERT_RUN.
CREATE_RUN = (
    "WITH task AS (SELECT queue, retry, max_duration_ms FROM tasks WHERE namespace = $2 AND task_id = $3),"
    + INSERT_RUN
    + ","
    + LOG_TRIGGERED
    + ","
    + ENQUEUE
    + "\nSELECT * FROM run"
)

# A run of the namespace, for a child's parent_run_id. Not locked: a parent's
# own transitions lock it FOR UPDATE and may wait on a queue's lock that a
# trigger transaction holds, and a child never locks its parent (SIGNAL_PARENT).
# $1 run id, $2 namespace.
PARENT = "SELECT 1 FROM runs WHERE id = $1 AND namespace = $2"

# A task's settings. $1 namespace, $2 task_id.
TASK = "SELECT queue, retry, max_duration_ms FROM tasks WHERE namespace = $1 AND task_id = $2"

# The run of an idempotency key. $1 namespace, $2 task_id, $3 idempotency_key.
RUN_BY_IDEMPOTENCY_KEY = "SELECT * FROM runs WHERE namespace = $1 AND task_id = $2 AND idempotency_key = $3"

# The run a request id made, and whether that was within the window (`recent`;
# index runs_request_id). $1 namespace, $2 request_id, $3 the window in seconds.
RUN_BY_REQUEST_ID = (
    "SELECT *, created_at > now() - make_interval(secs => $3) AS recent FROM runs "
    "WHERE namespace = $1 AND request_id = $2"
)

# A request id past its window forgotten, so it may make a new run. $1 run id.
FORGET_REQUEST_ID = "UPDATE runs SET request_id = NULL WHERE id = $1"

# The key that serialises the triggers and starts of one queue (transaction-level
# advisory lock): the queues row belongs to matching, so history never locks it.
# $1 namespace, $2 queue.
_QUEUE_KEY = "hashtextextended($1::text || '/' || $2::text, 0)"

# A queue's depth limit, the queue's lock taken when it has one, so concurrent
# triggers of it count one after the other. $1 namespace, $2 queue.
DEPTH_LIMIT_LOCKED = (
    "SELECT max_depth, pg_advisory_xact_lock(" + _QUEUE_KEY + ") FROM queues "
    "WHERE namespace = $1 AND name = $2 AND max_depth > 0"
)

# The queue's lock alone. $1 namespace, $2 queue.
LOCK_QUEUE = "SELECT pg_advisory_xact_lock(" + _QUEUE_KEY + ")"

# Runs waiting in a queue. $1 namespace, $2 queue.
QUEUE_DEPTH = "SELECT count(*) FROM queue_entries WHERE namespace = $1 AND queue = $2"

# The queue now has keyed runs: claims go round-robin over its keys ('' too).
# $1 namespace, $2 queue, $3 key.
ADD_CONCURRENCY_KEYS = (
    "INSERT INTO concurrency_keys (namespace, queue, key) VALUES ($1, $2, $3), "
    "($1, $2, '') ON CONFLICT DO NOTHING"
)

# A ttl's due time. $1 the run's created_at, $2 ttl seconds.
TTL_DUE = "SELECT $1::timestamptz + make_interval(secs => $2)"

# ---- locking ---------------------------------------------------------------------

# The run, locked. $1 run id, $2 namespace.
LOCK_RUN = "SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR UPDATE"
LOCK_RUN_SHARED = "SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR SHARE"
# The run, locked, in any namespace. $1 run id.
LOCK_RUN_BY_ID = "SELECT * FROM runs WHERE id = $1 FOR UPDATE"

# ---- the shared rows -------------------------------------------------------------

# One event. $1 run id, $2 type, $3 attempt, $4 details.
EVENT = EVENT_COLUMNS + "VALUES ($1, $2, $3, $4)"

# A timer, set or moved. $1 run id, $2 kind, $3 attempt, $4 due_at.
SET_TIMER = TIMER_COLUMNS + "VALUES ($1, $2, $3, $4)" + TIMER_UPSERT

# ---- requeuing and ending --------------------------------------------------------

# WAITING (or DELAYED, RETRYING; EXECUTING when its attempt was released and
# its lease timers dropped) -> QUEUED with its queue entry and event; its wait
# and its wait timers gone. $1 run id, $2 reason.
REQUEUE = (
    """WITH wait_gone AS (DELETE FROM waits WHERE run_id = $1),
timers_gone AS (DELETE FROM timers WHERE run_id = $1 AND kind IN ('wake', 'signal', 'delay', 'retry')),
run AS (
    UPDATE runs SET status = 'queued', updated_at = now(), next_attempt_at = NULL
    WHERE id = $1 RETURNING *),"""
    + ENQUEUE
    + ",\nlogged AS (\n    "
    + EVENT_COLUMNS
    + "\n    SELECT id, 'requeued', attempt_count, jsonb_build_object('reason', $2::text) FROM run)"
    + "\nSELECT * FROM run"
)

# The parameters of the statements that end an attempt or a run (END_ATTEMPT,
# END, FINISH_COMPLETED in attempts.py): $1 run id, $2 attempt number, $3 the
# attempt's status (NULL: no attempt to end), $4 its error, $5 its retry delay
# (ms), $6 the run's terminal status, $7 output, $8 output encoding, $9 error,
# $10 the event's details.

# Ends a locked run (and its current attempt, with $3): its queue entry,
# timers and wait gone, its event, a waiting parent signalled.
END = (
    """WITH current AS (SELECT id FROM runs WHERE id = $1),
entry_gone AS (DELETE FROM queue_entries WHERE run_id = $1),
wait_gone AS (DELETE FROM waits WHERE run_id = $1),
timers_gone AS (DELETE FROM timers WHERE run_id = $1),"""
    + END_ATTEMPT
    + ","
    + END_RUN
    + ","
    + LOG_ENDED
    + ","
    + SIGNAL_PARENT
    + "\nSELECT * FROM ended"
)

# ---- failures --------------------------------------------------------------------

# $1 run id, $2 failures so far.
SET_FAILURE_COUNT = "UPDATE runs SET failure_count = $2 WHERE id = $1"

# A failed run waits for its retry. $1 run id, $2 next attempt at.
SET_RETRYING = (
    "UPDATE runs SET status = 'retrying', next_attempt_at = $2, updated_at = now() WHERE id = $1 RETURNING *"
)

# $1 run id, $2 metadata.
SET_METADATA = "UPDATE runs SET metadata = $2, updated_at = now() WHERE id = $1"
