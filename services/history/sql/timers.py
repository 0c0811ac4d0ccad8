"""The timer loop's reads and the firing of a due timer."""

from __future__ import annotations

# When the loop must wake next: the earliest timer or schedule tick.
NEXT_DUE = "SELECT least((SELECT min(due_at) FROM timers), (SELECT min(next_fire_at) FROM schedules WHERE NOT paused))"

# Due timers, earliest first. $1 at most this many.
DUE_TIMERS = "SELECT run_id, kind FROM timers WHERE due_at <= now() ORDER BY due_at LIMIT $1"

# The run of a timer, unless another transaction holds it. $1 run id.
LOCK_RUN_UNLESS_LOCKED = "SELECT * FROM runs WHERE id = $1 FOR UPDATE SKIP LOCKED"

# Whether a run exists. $1 run id.
RUN_EXISTS = "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)"

# A timer of a run that is gone. $1 run id, $2 kind.
DROP_TIMER = "DELETE FROM timers WHERE run_id = $1 AND kind = $2"

# Takes a timer that is (still) due; its attempt. $1 run id, $2 kind.
TAKE_DUE_TIMER = "DELETE FROM timers WHERE run_id = $1 AND kind = $2 AND due_at <= now() RETURNING attempt"
