"""The journal: step records."""

from __future__ import annotations

from services.history.sql.rows import EVENT_COLUMNS, STEP_COLUMNS, STEP_ONCE

# A step record: fence (the attempt is current), insert once per position, log
# the event and extend the lease. $1 run id, $2 namespace, $3 attempt, $4 position,
# $5 name, $6 status, $7 output, $8 encoding, $9 error, $10 tries, $11 lease seconds.
RECORD_STEP = (
    """
WITH run AS (
    SELECT id FROM runs WHERE id = $1 AND namespace = $2 AND status = 'executing'
    AND attempt_count = $3 FOR SHARE),
step AS (
    """
    + STEP_COLUMNS
    + """
    SELECT run.id, $4, $5, $6, $7, $8, $9, $3, $10 FROM run
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

# A wait's step, written by history when the wait resolves. $1 run id,
# $2 position, $3 name, $4 status, $5 output, $6 encoding, $7 error, $8 attempt.
RECORD_WAIT_STEP = STEP_COLUMNS + "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)" + STEP_ONCE

# One step. $1 run id, $2 position.
STEP_AT = "SELECT * FROM steps WHERE run_id = $1 AND position = $2"

# The journal in order. $1 run id.
JOURNAL = "SELECT * FROM steps WHERE run_id = $1 ORDER BY position"
