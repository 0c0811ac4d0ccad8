"""Starting and ending attempts, leases and the slots of limited queues."""

from __future__ import annotations

from services.history.sql.rows import (
    END_ATTEMPT,
    END_RUN,
    EVENT_COLUMNS,
    LOG_ENDED,
    SIGNAL_PARENT,
    TIMER_COLUMNS,
    TIMER_UPSERT,
)

# Starts the next attempt of a claimed, queued run whose queue has no limits and
# is not paused (or, with $7 true, whose slot the caller took under the queue's
# lock): the run, its attempt, lease and deadline timers, its event, the claimed
# entry gone; ready_at is when the entry became ready (the dispatch latency
# metric), attempt_token the new attempt's. The attempt keeps $8, its token: the secret every heartbeat and
# write of the attempt must carry (see FENCE_RUN). $1 run id, $2 namespace,
# $3 claim token, $4 worker id, $5 worker version, $6 lease seconds, $7 slot
# taken, $8 attempt token.
START = (
    """
WITH run AS (
    UPDATE runs r SET status = 'executing', attempt_count = r.attempt_count + 1, updated_at = now(),
        started_at = coalesce(r.started_at, now()), next_attempt_at = NULL
    WHERE r.id = $1 AND r.namespace = $2 AND r.status = 'queued'
    AND EXISTS (SELECT 1 FROM queue_entries e WHERE e.run_id = $1 AND e.claim_token = $3)
    AND ($7 OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.namespace = $2 AND q.name = r.queue
                           AND (q.paused OR q.concurrency_limit > 0 OR q.rate_limit > 0)))
    RETURNING r.*),
entry AS (DELETE FROM queue_entries WHERE run_id = $1 AND EXISTS (SELECT 1 FROM run) RETURNING available_at),
attempt AS (
    INSERT INTO attempts (run_id, number, status, worker_id, worker_version, token)
    SELECT id, attempt_count, 'executing', $4, $5, $8 FROM run RETURNING token),
ttl AS (DELETE FROM timers WHERE run_id = $1 AND kind = 'ttl' AND EXISTS (SELECT 1 FROM run)),
timer AS (
    """
    + TIMER_COLUMNS
    + """
    SELECT id, 'lease', attempt_count, updated_at + make_interval(secs => $6) FROM run
    UNION ALL
    SELECT id, 'deadline', attempt_count,
           updated_at + make_interval(secs => greatest(0, max_duration_ms - exec_ms) / 1000.0)
    FROM run WHERE max_duration_ms IS NOT NULL
   """
    + TIMER_UPSERT
    + """),
logged AS (
    """
    + EVENT_COLUMNS
    + """
    SELECT id, 'attempt_started', attempt_count,
           jsonb_build_object('worker_id', $4::text, 'worker_version', $5::text) FROM run),
fairness AS (
    UPDATE concurrency_keys k SET last_dispatched_at = now() FROM run
    WHERE k.namespace = run.namespace AND k.queue = run.queue AND k.key = run.concurrency_key)
SELECT run.*, (SELECT available_at FROM entry) AS ready_at, (SELECT token FROM attempt) AS attempt_token
FROM run
"""
)

# The hot path's completed finish: ends the current attempt of an executing run
# and the run as completed, timers cleared, execution time added, its event, a
# waiting parent signalled (an executing run has no queue entry and no wait to
# clear). Fenced like every write of an attempt: the current attempt, with its
# token. Parameters as runs.END ($3 and $6 'completed'), $11 namespace, $12
# attempt token.
FINISH_COMPLETED = (
    """
WITH current AS (
    SELECT id FROM runs WHERE id = $1 AND namespace = $11 AND status = 'executing' AND attempt_count = $2
    AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = $1 AND a.number = $2 AND a.token = $12)
    FOR UPDATE),"""
    + END_ATTEMPT
    + """,
timers_gone AS (DELETE FROM timers WHERE run_id = $1 AND EXISTS (SELECT 1 FROM current)),"""
    + END_RUN
    + ","
    + LOG_ENDED
    + ","
    + SIGNAL_PARENT
    + "\nSELECT * FROM ended"
)

# Ends attempt $2 of a locked run that goes on (suspended, or retrying), adding
# its duration to the run's execution time. Parameters $1-$5 as runs.END.
END_ATTEMPT_ONLY = (
    "WITH current AS (SELECT $1::uuid AS id),"
    + END_ATTEMPT
    + "\nUPDATE runs SET exec_ms = exec_ms + coalesce((SELECT spent FROM attempt), 0) WHERE id = $1"
)

# The timers of an attempt in flight. $1 run id.
DROP_ATTEMPT_TIMERS = "DELETE FROM timers WHERE run_id = $1 AND kind IN ('lease', 'deadline')"

# Extends the lease of attempt $2 of run $1 in namespace $4 by $3 seconds, when
# $5 is the attempt's token; its new due time.
EXTEND_LEASE = (
    "UPDATE timers SET due_at = now() + make_interval(secs => $3) "
    "WHERE run_id = $1 AND kind = 'lease' AND attempt = $2 "
    "AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND namespace = $4) "
    "AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = $1 AND a.number = $2 AND a.token = $5) "
    "RETURNING due_at"
)

# ---- the fence of a worker's writes ------------------------------------------------

# Every heartbeat and write of an attempt is accepted only for the run's
# current, executing attempt, and only with that attempt's token (attempts.token,
# handed over as AttemptAssignment.attempt_token). The single statements of the
# hot path (steps.RECORD_STEP, FINISH_COMPLETED, EXTEND_LEASE) check both in
# their own WHERE; the general paths, and a refusal's explanation, read the run
# with its current attempt's token, and transition.fence compares them.

# The current attempt's token, a column of the run `r` read below.
CURRENT_TOKEN = (
    "(SELECT a.token FROM attempts a WHERE a.run_id = r.id AND a.number = r.attempt_count) AS attempt_token"
)

# The run of a worker's write, with its current attempt's token. $1 run id, $2 namespace.
FENCE_RUN = "SELECT r.*, " + CURRENT_TOKEN + " FROM runs r WHERE r.id = $1 AND r.namespace = $2"

# The same, with the run locked (the general paths of an attempt's writes).
FENCE_RUN_LOCKED = FENCE_RUN + " FOR UPDATE OF r"
FENCE_RUN_SHARED = FENCE_RUN + " FOR SHARE OF r"

# How an attempt stands (NULL: no such attempt). $1 run id, $2 attempt number.
ATTEMPT_STATUS = "SELECT status FROM attempts WHERE run_id = $1 AND number = $2"

# The worker of an attempt. $1 run id, $2 attempt number.
ATTEMPT_WORKER = "SELECT worker_id FROM attempts WHERE run_id = $1 AND number = $2"

# ---- claims and slots ------------------------------------------------------------

# A stale entry must not be claimed again and again. $1 run id.
DROP_QUEUE_ENTRY = "DELETE FROM queue_entries WHERE run_id = $1"

# Whether the claim still holds. $1 run id, $2 claim token.
HOLDS_CLAIM = "SELECT EXISTS (SELECT 1 FROM queue_entries WHERE run_id = $1 AND claim_token = $2)"

# Hands a claim back; a rate-limited entry becomes available at $2 at the
# earliest. Whether $2 is still ahead. $1 run id, $2 not before.
RETURN_CLAIM = (
    "UPDATE queue_entries SET claim_token = NULL, claimed_until = NULL, "
    "available_at = greatest(available_at, $2) WHERE run_id = $1 "
    "RETURNING $2::timestamptz > now()"
)

# A queue's settings (read, never locked: the row is matching's). $1 namespace, $2 queue.
QUEUE_SETTINGS = "SELECT *, now() AS now FROM queues WHERE namespace = $1 AND name = $2"

# Executing runs of one (queue, key) group. $1 namespace, $2 queue, $3 key.
RUNNING_IN_GROUP = (
    "SELECT count(*) FROM runs WHERE namespace = $1 AND queue = $2 AND concurrency_key = $3 "
    "AND status = 'executing'"
)

# Starts of a group older than $4 are forgotten. $1 namespace, $2 queue, $3 key.
PRUNE_DISPATCHES = (
    "DELETE FROM queue_dispatches WHERE namespace = $1 AND queue = $2 AND key = $3 AND at <= $4"
)

# Starts of a group after $4, oldest first. $1 namespace, $2 queue, $3 key.
RECENT_DISPATCHES = (
    "SELECT at FROM queue_dispatches WHERE namespace = $1 AND queue = $2 AND key = $3 AND at > $4 ORDER BY at"
)

# A start of a group at $4. $1 namespace, $2 queue, $3 key.
RECORD_DISPATCH = "INSERT INTO queue_dispatches (namespace, queue, key, at) VALUES ($1, $2, $3, $4)"
