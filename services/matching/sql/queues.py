"""Statements on the queues table (owned by matching). The counts read
history's queue_entries and runs without locking them."""

# A queue declared by a worker's task; its limit is the task's unless the queue
# is managed (changed through UpdateQueue). $1 namespace, $2 name, $3 concurrency_limit
UPSERT_DECLARED_QUEUE = (
    "INSERT INTO queues (namespace, name, concurrency_limit) VALUES ($1, $2, $3) "
    "ON CONFLICT (namespace, name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit, "
    "updated_at = now() WHERE NOT queues.managed"
)

# Creates or changes a queue through UpdateQueue; a NULL keeps the current value
# (0 for a new queue). $1 namespace, $2 name, $3 concurrency_limit, $4 rate_limit,
# $5 rate_period_ms, $6 max_depth
UPSERT_MANAGED_QUEUE = (
    "INSERT INTO queues (namespace, name, concurrency_limit, rate_limit, rate_period_ms, max_depth, "
    "managed) VALUES ($1, $2, coalesce($3, 0), coalesce($4, 0), coalesce($5, 0), coalesce($6, 0), true) "
    "ON CONFLICT (namespace, name) DO UPDATE SET "
    "concurrency_limit = coalesce($3, queues.concurrency_limit), "
    "rate_limit = coalesce($4, queues.rate_limit), rate_period_ms = coalesce($5, queues.rate_period_ms), "
    "max_depth = coalesce($6, queues.max_depth), managed = true, updated_at = now()"
)

# Pauses or resumes a queue. $1 namespace, $2 name, $3 paused -> name (none: no such queue)
SET_PAUSED = (
    "UPDATE queues SET paused = $3, updated_at = now() WHERE namespace = $1 AND name = $2 RETURNING name"
)

# A queue's row with its depth (queued entries) and running (executing runs).
_WITH_COUNTS = (
    "SELECT q.*, (SELECT count(*) FROM queue_entries e WHERE e.namespace = q.namespace "
    "AND e.queue = q.name) AS depth, (SELECT count(*) FROM runs r WHERE r.namespace = q.namespace "
    "AND r.queue = q.name AND r.status = 'executing') AS running FROM queues q"
)

# One queue with its counts. $1 namespace, $2 name
GET_QUEUE = _WITH_COUNTS + " WHERE q.namespace = $1 AND q.name = $2"

# Every queue of a namespace with its counts, by name. $1 namespace
LIST_QUEUES = _WITH_COUNTS + " WHERE q.namespace = $1 ORDER BY q.name"

# The queues with a concurrency limit, in every namespace. -> namespace, name
LIMITED_QUEUES = "SELECT namespace, name FROM queues WHERE concurrency_limit > 0"

# Every queue's depth (ready-set entries) and executing runs, in every namespace,
# for the metrics read at scrape time. -> namespace, name, depth, running
QUEUE_COUNTS = (
    "SELECT c.namespace, c.name, c.depth, c.running FROM ("
    + _WITH_COUNTS
    + ") c ORDER BY c.namespace, c.name"
)
