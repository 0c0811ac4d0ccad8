"""Statements on the workers table (owned by matching)."""

# A worker's registration; a re-registration replaces it.
# $1 namespace, $2 worker_id, $3 version, $4 task_ids (text[]), $5 slots
UPSERT_WORKER = (
    "INSERT INTO workers (namespace, worker_id, version, task_ids, slots) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, worker_id) DO UPDATE SET "
    "version = EXCLUDED.version, task_ids = EXCLUDED.task_ids, slots = EXCLUDED.slots, "
    "last_seen_at = now()"
)

# One worker's row. $1 namespace, $2 worker_id
GET_WORKER = "SELECT * FROM workers WHERE namespace = $1 AND worker_id = $2"
