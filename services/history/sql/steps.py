"""The journal: step records."""

from __future__ import annotations

from cairn.limits import MAX_STEPS_IN_FLIGHT
from services.history.sql.rows import EVENT_COLUMNS, STEP_COLUMNS, STEP_ONCE

# The highest position a step of run $1 may be recorded at: steps started
# together finish out of order, so the journal may have gaps (steps still
# running), at most MAX_STEPS_IN_FLIGHT above its highest recorded position.
_POSITION_BOUND = "coalesce((SELECT max(position) FROM steps WHERE run_id = $1), -1) + " + str(
    MAX_STEPS_IN_FLIGHT
)

# A step record: fence (the attempt is current, and $13 is its token), the
# position within the bound, insert once per position, log the event and
# extend the lease. The run's
# row is locked (FOR NO KEY UPDATE; every other writer of its events takes FOR UPDATE)
# before the event takes its id, so a run's event ids follow commit order and a
# watcher resuming after an id misses none of the run's events. $1 run
# id, $2 namespace, $3 attempt, $4 position (>= 0), $5 name, $6 status,
# $7 output, $8 encoding, $9 error, $10 tries, $11 lease seconds, $12 the
# errors of the failed tries (jsonb list; NULL: none), $13 the attempt's token.
RECORD_STEP = (
    """
WITH run AS (
    SELECT id FROM runs WHERE id = $1 AND namespace = $2 AND status = 'executing' AND attempt_count = $3
    AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = $1 AND a.number = $3 AND a.token = $13)
    AND $4 <= """
    + _POSITION_BOUND
    + """ FOR NO KEY UPDATE),
step AS (
    """
    + STEP_COLUMNS
    + """
    SELECT run.id, $4, $5, $6, $7, $8, $9, $3, $10, coalesce($12::jsonb, '[]') FROM run
   """
    + STEP_ONCE
    + """ RETURNING *),
logged AS (
    """
    + EVENT_COLUMNS
    + """
    SELECT run_id, 'step_recorded', $3,
           jsonb_build_object('position', position, 'name', name, 'status', status) FROM step),
lease AS (
    UPDATE timers SET due_at = now() + make_interval(secs => $11)
    WHERE run_id = $1 AND kind = 'lease' AND EXISTS (SELECT 1 FROM step))
SELECT * FROM step
"""
)

# The highest recorded position of run $1 (NULL: none), for a refusal's message.
HIGHEST_POSITION = "SELECT max(position) FROM steps WHERE run_id = $1"

# A wait's step, written by history when the wait resolves. $1 run id,
# $2 position, $3 name, $4 status, $5 output, $6 encoding, $7 error, $8 attempt.
RECORD_WAIT_STEP = STEP_COLUMNS + "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, '[]')" + STEP_ONCE

# One step. $1 run id, $2 position.
STEP_AT = "SELECT * FROM steps WHERE run_id = $1 AND position = $2"

# The journal in order. $1 run id.
JOURNAL = "SELECT * FROM steps WHERE run_id = $1 ORDER BY position"

# Where a wait at position $2 of run $1 stands: how many steps are recorded
# below it (all of them, when there is no gap) and the step already at it.
WAIT_POSITION = (
    "SELECT count(*) FILTER (WHERE position < $2) AS below, "
    "max(name) FILTER (WHERE position = $2) AS name, max(attempt) FILTER (WHERE position = $2) AS attempt "
    "FROM steps WHERE run_id = $1 AND position <= $2"
)

# The first unrecorded position of run $1's journal.
FIRST_GAP = (
    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM steps WHERE run_id = $1 AND position = 0) THEN 0 "
    "ELSE (SELECT min(s.position) + 1 FROM steps s WHERE s.run_id = $1 AND NOT EXISTS "
    "(SELECT 1 FROM steps t WHERE t.run_id = $1 AND t.position = s.position + 1)) END"
)
