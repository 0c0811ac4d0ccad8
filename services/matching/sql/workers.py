"""Statements on the workers table (owned by matching)."""

# A worker's registration; a re-registration replaces it, unless the worker id
# belongs to another API key that is still valid (then no row: refused). A
# registration without a key ($6 NULL: auth off) neither binds nor is bound.
# $1 namespace, $2 worker_id, $3 version, $4 task_ids (text[]), $5 slots,
# $6 the caller's key id (NULL: none) -> key_id
UPSERT_WORKER = (
    "INSERT INTO workers (namespace, worker_id, version, task_ids, slots, key_id) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace, worker_id) DO UPDATE SET "
    "version = EXCLUDED.version, task_ids = EXCLUDED.task_ids, slots = EXCLUDED.slots, "
    "last_seen_at = now(), key_id = coalesce(EXCLUDED.key_id, workers.key_id) "
    "WHERE workers.key_id IS NULL OR EXCLUDED.key_id IS NULL OR workers.key_id = EXCLUDED.key_id "
    "OR NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = workers.key_id AND k.revoked_at IS NULL "
    "AND (k.expires_at IS NULL OR k.expires_at > now())) "
    "RETURNING key_id"
)

# One worker's row, marked seen now: a poll reads it at most once per
# WORKER_SEEN_REFRESH (matching caches it), so this write is too.
# $1 namespace, $2 worker_id
TOUCH_WORKER = "UPDATE workers SET last_seen_at = now() WHERE namespace = $1 AND worker_id = $2 RETURNING *"

# The workers of a namespace, most recently seen first, each connected when seen
# within $2 seconds (PostgreSQL's clock, as last_seen_at). $1 namespace, $2 seconds
LIST_WORKERS = (
    "SELECT *, last_seen_at > now() - make_interval(secs => $2) AS connected FROM workers "
    "WHERE namespace = $1 ORDER BY last_seen_at DESC, worker_id"
)

# How many attempts each worker of a namespace is executing now: a read of
# history's runs and attempts (through the partial index of executing runs).
# $1 namespace.
RUNNING_BY_WORKER = (
    "SELECT a.worker_id, count(*) AS running FROM runs r "
    "JOIN attempts a ON a.run_id = r.id AND a.number = r.attempt_count "
    "WHERE r.namespace = $1 AND r.status = 'executing' GROUP BY a.worker_id"
)

# Deletes the registrations not seen within $1 seconds whose workers execute no
# attempt (a busy worker does not poll). $1 seconds -> the deleted rows' ids
FORGET_WORKERS = (
    "DELETE FROM workers w WHERE w.last_seen_at < now() - make_interval(secs => $1) "
    "AND NOT EXISTS (SELECT 1 FROM runs r JOIN attempts a ON a.run_id = r.id AND a.number = r.attempt_count "
    "WHERE r.namespace = w.namespace AND r.status = 'executing' AND a.worker_id = w.worker_id) "
    "RETURNING w.namespace, w.worker_id"
)
