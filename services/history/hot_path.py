"""The hot path's writes as single statements: trigger, start, step record and
finish each commit in one round trip when nothing unusual applies. Each
statement writes nothing when its case does not apply (an unregistered task, a
queue with limits, a stale attempt...); the caller then takes the general
transaction in store.py, which handles and explains every case. Both paths
write the same rows."""

from __future__ import annotations

# A run with no delay, ttl or concurrency key, for a queue without max_depth:
# the run, its event and its queue entry. $1 id, $2 namespace, $3 task_id,
# $4 input, $5 encoding, $6 idempotency_key, $7 parent_run_id, $8 priority,
# $9 tags, $10 metadata, $11 max_duration_ms (NULL: the task's), $12 schedule_id.
TRIGGER = """
WITH task AS (
    SELECT queue, retry, max_duration_ms FROM tasks t WHERE namespace = $2 AND task_id = $3
    AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.namespace = $2 AND q.name = t.queue
                    AND q.max_depth > 0)),
run AS (
    INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, idempotency_key,
                      retry, parent_run_id, priority, tags, metadata, max_duration_ms, schedule_id)
    SELECT $1, $2, $3, task.queue, 'queued', $4, $5, $6, task.retry, $7, $8, $9, $10,
           coalesce($11, task.max_duration_ms), $12 FROM task
    ON CONFLICT (namespace, task_id, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING RETURNING *),
logged AS (
    INSERT INTO run_events (run_id, type, attempt, details)
    SELECT id, 'triggered', 0, jsonb_build_object('idempotency_key', $6::text,
           'parent_run_id', $7::uuid::text, 'schedule_id', $12::text) FROM run),
entry AS (
    INSERT INTO queue_entries (run_id, namespace, task_id, queue, priority, concurrency_key)
    SELECT id, namespace, task_id, queue, priority, concurrency_key FROM run)
SELECT * FROM run
"""

# Starts the next attempt of a claimed, queued run whose queue has no limits and
# is not paused (or, with $7 true, whose slot the caller took under the queue's
# lock): the run, its attempt, lease and deadline timers, its event, the claimed
# entry gone. $1 run id, $2 namespace, $3 claim token, $4 worker id, $5 worker
# version, $6 lease seconds, $7 slot taken.
START = """
WITH run AS (
    UPDATE runs r SET status = 'executing', attempt_count = r.attempt_count + 1, updated_at = now(),
        started_at = coalesce(r.started_at, now()), next_attempt_at = NULL
    WHERE r.id = $1 AND r.namespace = $2 AND r.status = 'queued'
    AND EXISTS (SELECT 1 FROM queue_entries e WHERE e.run_id = $1 AND e.claim_token = $3)
    AND ($7 OR NOT EXISTS (SELECT 1 FROM queues q WHERE q.namespace = $2 AND q.name = r.queue
                           AND (q.paused OR q.concurrency_limit > 0 OR q.rate_limit > 0)))
    RETURNING r.*),
entry AS (DELETE FROM queue_entries WHERE run_id = $1 AND EXISTS (SELECT 1 FROM run)),
attempt AS (
    INSERT INTO attempts (run_id, number, status, worker_id, worker_version)
    SELECT id, attempt_count, 'executing', $4, $5 FROM run),
ttl AS (DELETE FROM timers WHERE run_id = $1 AND kind = 'ttl' AND EXISTS (SELECT 1 FROM run)),
timer AS (
    INSERT INTO timers (run_id, kind, attempt, due_at)
    SELECT id, 'lease', attempt_count, updated_at + make_interval(secs => $6) FROM run
    UNION ALL
    SELECT id, 'deadline', attempt_count,
           updated_at + make_interval(secs => greatest(0, max_duration_ms - exec_ms) / 1000.0)
    FROM run WHERE max_duration_ms IS NOT NULL
    ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at),
logged AS (
    INSERT INTO run_events (run_id, type, attempt, details)
    SELECT id, 'attempt_started', attempt_count,
           jsonb_build_object('worker_id', $4::text, 'worker_version', $5::text) FROM run),
fairness AS (
    UPDATE concurrency_keys k SET last_dispatched_at = now() FROM run
    WHERE k.namespace = run.namespace AND k.queue = run.queue AND k.key = run.concurrency_key)
SELECT * FROM run
"""

# A step record: fence (the attempt is current), insert once per position, log
# the event and extend the lease. $1 run id, $2 namespace, $3 attempt, $4 position,
# $5 name, $6 status, $7 output, $8 encoding, $9 error, $10 tries, $11 lease seconds.
RECORD_STEP = """
WITH run AS (
    SELECT id FROM runs WHERE id = $1 AND namespace = $2 AND status = 'executing'
    AND attempt_count = $3 FOR SHARE),
step AS (
    INSERT INTO steps (run_id, position, name, status, output, output_encoding, error, attempt, tries)
    SELECT run.id, $4, $5, $6, $7, $8, $9, $3, $10 FROM run
    ON CONFLICT (run_id, position) DO NOTHING RETURNING *),
logged AS (
    INSERT INTO run_events (run_id, type, attempt, details)
    SELECT run_id, 'step_recorded', $3,
           jsonb_build_object('position', position, 'name', name, 'status', status) FROM step),
lease AS (
    UPDATE timers SET due_at = now() + make_interval(secs => $11)
    WHERE run_id = $1 AND kind = 'lease' AND EXISTS (SELECT 1 FROM step))
SELECT * FROM step
"""

# Ends the current attempt of an executing run as completed, with the run:
# timers cleared, execution time added, its event, and a waiting parent
# signalled. (An executing run has no queue entry and no wait to clear.) $1 run id, $2 namespace, $3 attempt, $4 output,
# $5 output encoding.
FINISH_COMPLETED = """
WITH current AS (
    SELECT id FROM runs WHERE id = $1 AND namespace = $2 AND status = 'executing'
    AND attempt_count = $3 FOR UPDATE),
attempt AS (
    UPDATE attempts SET status = 'completed', finished_at = now()
    WHERE run_id = $1 AND number = $3 AND EXISTS (SELECT 1 FROM current)
    RETURNING (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS spent),
timers_gone AS (DELETE FROM timers WHERE run_id = $1 AND EXISTS (SELECT 1 FROM current)),
run AS (
    UPDATE runs r SET status = 'completed', output = $4, output_encoding = $5, error = NULL,
        finished_at = now(), updated_at = now(), next_attempt_at = NULL,
        exec_ms = r.exec_ms + coalesce((SELECT spent FROM attempt), 0)
    FROM current WHERE r.id = current.id RETURNING r.*),
logged AS (
    INSERT INTO run_events (run_id, type, attempt, details)
    SELECT id, 'completed', attempt_count, '{"error_type": null}'::jsonb FROM run),
parent AS (
    INSERT INTO timers (run_id, kind, attempt, due_at)
    SELECT parent_run_id, 'signal', 0, now() FROM run WHERE parent_run_id IS NOT NULL
    ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at)
SELECT * FROM run
"""
