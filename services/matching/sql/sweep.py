"""The sweep's read of history's ready set (never locked or written here)."""

# The (namespace, task_id) keys with claimable entries: ready and not claimed
# (or whose claim expired). No parameters.
READY_KEYS = (
    "SELECT DISTINCT namespace, task_id FROM queue_entries WHERE available_at <= now() "
    "AND (claimed_until IS NULL OR claimed_until < now())"
)
