"""Schedules: created through the API or declared with a task, fired by the timer loop."""

from __future__ import annotations

# Whether a task is registered. $1 namespace, $2 task_id.
TASK_EXISTS = "SELECT EXISTS (SELECT 1 FROM tasks WHERE namespace = $1 AND task_id = $2)"

# A new schedule (none when the id is taken). $1 namespace, $2 id, $3 task_id,
# $4 cron, $5 timezone, $6 payload, $7 encoding, $8 dedup key, $9 next fire at.
CREATE = (
    "INSERT INTO schedules (namespace, id, task_id, cron, timezone, payload, payload_encoding, "
    "dedup_key, next_fire_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (namespace, id) DO NOTHING RETURNING *"
)

# A namespace's schedules, of one task unless $2 is ''. $1 namespace, $2 task_id.
LIST = "SELECT * FROM schedules WHERE namespace = $1 AND ($2 = '' OR task_id = $2) ORDER BY id"

# A schedule, locked. $1 namespace, $2 id.
LOCK = "SELECT * FROM schedules WHERE namespace = $1 AND id = $2 FOR UPDATE"

# Pauses or resumes. $1 namespace, $2 id, $3 paused, $4 next fire at.
SET_PAUSED = (
    "UPDATE schedules SET paused = $3, next_fire_at = $4 WHERE namespace = $1 AND id = $2 RETURNING *"
)

# $1 namespace, $2 id.
DELETE = "DELETE FROM schedules WHERE namespace = $1 AND id = $2 RETURNING id"

# A task's declared schedule dropped. $1 namespace, $2 id.
DROP_DECLARED = "DELETE FROM schedules WHERE namespace = $1 AND id = $2 AND declared"

# A task's declared schedule, created or changed; an unchanged one keeps its
# next tick. $1 namespace, $2 id, $3 task_id, $4 cron, $5 timezone, $6 next fire at.
UPSERT_DECLARED = (
    "INSERT INTO schedules (namespace, id, task_id, cron, timezone, dedup_key, declared, next_fire_at) "
    "VALUES ($1, $2, $3, $4, $5, $2, true, $6) ON CONFLICT (namespace, id) DO UPDATE SET "
    "cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, next_fire_at = CASE WHEN "
    "schedules.cron = EXCLUDED.cron AND schedules.timezone = EXCLUDED.timezone "
    "THEN schedules.next_fire_at ELSE EXCLUDED.next_fire_at END"
)

# The most overdue schedule, claimed (SKIP LOCKED: one replica fires a tick).
TAKE_DUE = (
    "SELECT * FROM schedules WHERE NOT paused AND next_fire_at <= now() "
    "ORDER BY next_fire_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)

# A fired tick. $1 namespace, $2 id, $3 next fire at, $4 the tick, $5 its run (NULL: none).
FIRED = (
    "UPDATE schedules SET next_fire_at = $3, last_fired_at = $4, "
    "last_run_id = coalesce($5, last_run_id) WHERE namespace = $1 AND id = $2"
)
