"""Statements on the tasks table (owned by matching)."""

# A task's latest declaration wins.
# $1 namespace, $2 task_id, $3 queue, $4 retry (jsonb), $5 max_duration_ms (NULL: none)
UPSERT_TASK = (
    "INSERT INTO tasks (namespace, task_id, queue, retry, max_duration_ms) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, task_id) DO UPDATE SET "
    "queue = EXCLUDED.queue, retry = EXCLUDED.retry, "
    "max_duration_ms = EXCLUDED.max_duration_ms, updated_at = now()"
)

# The tasks on a queue. $1 namespace, $2 queue name -> task_id
TASK_IDS_OF_QUEUE = "SELECT task_id FROM tasks WHERE namespace = $1 AND queue = $2"
