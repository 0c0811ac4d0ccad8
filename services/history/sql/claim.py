"""Claiming ready queue entries for a polling worker. A claim is a row state
with an expiry (claim_token, claimed_until), never an open transaction."""

from __future__ import annotations

# The gates of the namespace's queues: paused queues (key NULL, no room) and,
# per (queue, key) group of a queue with a concurrency limit, the room left.
_GATES = """
gates AS (
  SELECT q.name AS queue, NULL::text AS key, 0::bigint AS room FROM queues q
  WHERE q.namespace = $1 AND q.paused
  UNION ALL
  SELECT r.queue, r.concurrency_key, q.concurrency_limit - count(*) FROM runs r
  JOIN queues q ON q.namespace = r.namespace AND q.name = r.queue
  WHERE r.namespace = $1 AND r.status = 'executing' AND q.concurrency_limit > 0
  GROUP BY r.queue, r.concurrency_key, q.concurrency_limit),
limits AS (SELECT name AS queue, concurrency_limit FROM queues WHERE namespace = $1 AND concurrency_limit > 0)
"""
_READY = (
    "e.namespace = $1 AND e.task_id = ANY($2) AND e.available_at <= now() "
    "AND (e.claimed_until IS NULL OR e.claimed_until < now()) "
    "AND NOT EXISTS (SELECT 1 FROM gates g WHERE g.queue = e.queue "
    "AND (g.key IS NULL OR g.key = e.concurrency_key) AND g.room <= 0)"
)
# The claim of the entries picked by the subquery that follows it; ARRAY(): picked once.
_SET_CLAIM_HEAD = (
    " UPDATE queue_entries SET claim_token = $3, claimed_until = now() + make_interval(secs => $4) "
    "WHERE run_id = ANY (ARRAY("
)
_SET_CLAIM_TAIL = ")) RETURNING run_id"
# One index-ordered lookup per task (namespace, task_id, priority, available_at),
# then the best $5 of those, no more per group than its room: never a sort of
# the whole ready set, and no claims that history would refuse for the limit.
# The lookup's extra condition goes between _PER_TASK_HEAD and _PER_TASK_TAIL.
_PER_TASK_HEAD = (
    "SELECT c.run_id FROM (SELECT c.*, row_number() OVER ("
    "  PARTITION BY c.queue, c.concurrency_key ORDER BY c.priority DESC, c.available_at) AS rank"
    " FROM unnest($2::text[]) AS t(task_id) CROSS JOIN LATERAL ("
    "  SELECT e.run_id, e.priority, e.available_at, e.queue, e.concurrency_key FROM queue_entries e"
    "  WHERE e.task_id = t.task_id AND " + _READY
)
_PER_TASK_TAIL = (
    "  ORDER BY e.priority DESC, e.available_at LIMIT $5 FOR UPDATE OF e SKIP LOCKED) c) c"
    " WHERE c.rank <= coalesce("
    "  (SELECT g.room FROM gates g WHERE g.queue = c.queue AND g.key = c.concurrency_key),"
    "  (SELECT l.concurrency_limit FROM limits l WHERE l.queue = c.queue), $5)"
    " ORDER BY c.priority DESC, c.available_at LIMIT $5"
)
_UNKEYED_ONLY = (
    " AND NOT EXISTS (SELECT 1 FROM concurrency_keys k WHERE k.namespace = e.namespace AND k.queue = e.queue)"
)

# The claims below: $1 namespace, $2 task ids, $3 claim token, $4 claim seconds,
# $5 at most this many entries. Each returns the claimed run ids.

# The best ready entries of the tasks, by priority then arrival.
CLAIM = "WITH " + _GATES + _SET_CLAIM_HEAD + _PER_TASK_HEAD + _PER_TASK_TAIL + _SET_CLAIM_TAIL
# The same, only of queues without keyed runs.
UNKEYED_CLAIM = (
    "WITH " + _GATES + _SET_CLAIM_HEAD + _PER_TASK_HEAD + _UNKEYED_ONLY + _PER_TASK_TAIL + _SET_CLAIM_TAIL
)
# One entry per key of the tasks' keyed queues, the key served least recently
# first (round-robin).
FAIR_CLAIM = (
    "WITH " + _GATES + _SET_CLAIM_HEAD + "SELECT c.run_id FROM concurrency_keys k CROSS JOIN LATERAL ("
    " SELECT e.run_id FROM queue_entries e WHERE e.queue = k.queue AND e.concurrency_key = k.key AND "
    + _READY
    + " ORDER BY e.priority DESC, e.available_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED) c "
    "WHERE k.namespace = $1 AND k.queue IN (SELECT t.queue FROM tasks t WHERE t.namespace = $1 "
    "AND t.task_id = ANY($2)) ORDER BY k.last_dispatched_at NULLS FIRST LIMIT $5" + _SET_CLAIM_TAIL
)

# Whether any of the tasks' queues has keyed runs. $1 namespace, $2 task ids.
HAS_KEYS = (
    "SELECT EXISTS (SELECT 1 FROM concurrency_keys k JOIN tasks t ON t.namespace = k.namespace "
    "AND t.queue = k.queue WHERE k.namespace = $1 AND t.task_id = ANY($2))"
)

# Gives claims back. $1 run ids, $2 the token they were claimed under.
RELEASE = (
    "UPDATE queue_entries SET claim_token = NULL, claimed_until = NULL "
    "WHERE run_id = ANY($1) AND claim_token = $2"
)
