"""Statements on the tasks table (owned by matching)."""

# A task's declaration, after Registry checked it against the stored one.
# $1 namespace, $2 task_id, $3 queue, $4 retry (jsonb), $5 max_duration_ms (NULL: none),
# $6 the whole declaration (jsonb), $7 the declaring worker's version
UPSERT_TASK = (
    "INSERT INTO tasks (namespace, task_id, queue, retry, max_duration_ms, declaration, version) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (namespace, task_id) DO UPDATE SET "
    "queue = EXCLUDED.queue, retry = EXCLUDED.retry, "
    "max_duration_ms = EXCLUDED.max_duration_ms, declaration = EXCLUDED.declaration, "
    "version = EXCLUDED.version, updated_at = now()"
)

# The stored declarations of some tasks, locked until the registration that
# read them commits. $1 namespace, $2 task ids (text[])
DECLARATIONS = (
    "SELECT task_id, declaration, version FROM tasks WHERE namespace = $1 AND task_id = ANY($2::text[]) "
    "ORDER BY task_id FOR UPDATE"
)

# The tasks on a queue. $1 namespace, $2 queue name -> task_id
TASK_IDS_OF_QUEUE = "SELECT task_id FROM tasks WHERE namespace = $1 AND queue = $2"
