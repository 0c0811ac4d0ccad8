"""Retention: deleting finished runs with every row that belongs to them."""

from __future__ import annotations

# Bounds any wait of a pruning transaction (2 s).
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '2s'"

# Oldest finished runs first; a child whose parent is unfinished is skipped.
# $1 retention seconds, $2 the terminal statuses, $3 at most this many.
PICK = """
SELECT r.id FROM runs r
WHERE r.finished_at < now() - make_interval(secs => $1)
  AND r.status = ANY($2::text[])
  AND (r.parent_run_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM runs p WHERE p.id = r.parent_run_id AND p.status <> ALL($2::text[])))
ORDER BY r.finished_at
LIMIT $3
FOR UPDATE OF r SKIP LOCKED
"""

# Every table with rows of a run (see services/common/migrations/), children
# before runs (attempts and steps reference runs). $1: the picked run ids.
DELETE_STEPS = "DELETE FROM steps WHERE run_id = ANY($1::uuid[])"
DELETE_ATTEMPTS = "DELETE FROM attempts WHERE run_id = ANY($1::uuid[])"
DELETE_EVENTS = "DELETE FROM run_events WHERE run_id = ANY($1::uuid[])"
DELETE_TIMERS = "DELETE FROM timers WHERE run_id = ANY($1::uuid[])"
DELETE_WAITS = "DELETE FROM waits WHERE run_id = ANY($1::uuid[])"
DELETE_CHILD_WAITS = "DELETE FROM child_waits WHERE parent_run_id = ANY($1::uuid[])"
DELETE_INBOX = "DELETE FROM run_inbox WHERE run_id = ANY($1::uuid[])"
DELETE_QUEUE_ENTRIES = "DELETE FROM queue_entries WHERE run_id = ANY($1::uuid[])"
# Tokens made by the runs, unless some waiting run still waits on one.
DELETE_TOKENS = (
    "DELETE FROM wait_tokens t WHERE t.run_id = ANY($1::uuid[]) AND NOT EXISTS ("
    "SELECT 1 FROM waits w WHERE w.kind = 'token' AND w.token_id = t.id)"
)
DELETE_RUNS = "DELETE FROM runs WHERE id = ANY($1::uuid[])"
DELETES = (
    DELETE_STEPS,
    DELETE_ATTEMPTS,
    DELETE_EVENTS,
    DELETE_TIMERS,
    DELETE_WAITS,
    DELETE_CHILD_WAITS,
    DELETE_INBOX,
    DELETE_QUEUE_ENTRIES,
    DELETE_TOKENS,
    DELETE_RUNS,
)
