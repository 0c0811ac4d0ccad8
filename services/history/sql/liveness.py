"""The statements of history's liveness row (history_liveness, one row) and
of the lease grace after a time no history replica ran (liveness.py)."""

from __future__ import annotations

# A beat while some replica (this one or another) was seen within $1 seconds:
# the row now, NULL when it is older than that (then BEAT_AFTER_GAP).
BEAT = (
    "UPDATE history_liveness SET seen_at = now() "
    "WHERE id = 1 AND seen_at > now() - make_interval(secs => $1) RETURNING seen_at"
)

# When a history replica was last seen (NULL: never) and whether that is more
# than $1 seconds ago, the row locked: replicas that find it old take turns,
# and the second sees the first's beat.
LAST_SEEN = (
    "SELECT nullif(seen_at, '-infinity') AS seen_at, seen_at <= now() - make_interval(secs => $1) AS gap "
    "FROM history_liveness WHERE id = 1 FOR UPDATE"
)

# The lease timers that fell due, or fall due soon, after the last time a
# replica was seen (the row, locked by LAST_SEEN), move to $1 seconds from now:
# no replica ran to fire them, and no worker could reach one to heartbeat.
# Their count.
GRACE = (
    "WITH moved AS (UPDATE timers SET due_at = now() + make_interval(secs => $1) "
    "WHERE kind = 'lease' AND due_at > (SELECT seen_at FROM history_liveness WHERE id = 1) "
    "AND due_at < now() + make_interval(secs => $1) RETURNING 1) SELECT count(*) FROM moved"
)

# The beat after a gap (or the first ever).
SEEN_NOW = "UPDATE history_liveness SET seen_at = now() WHERE id = 1"

# The row, should it have been deleted: as if no replica had ever run.
ENSURE_ROW = "INSERT INTO history_liveness (id, seen_at) VALUES (1, '-infinity') ON CONFLICT DO NOTHING"
