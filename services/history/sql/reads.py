"""Reads of runs for GetRun, ListRuns and cancellation."""

from __future__ import annotations

# A run. $1 run id, $2 namespace.
RUN = "SELECT * FROM runs WHERE id = $1 AND namespace = $2"

# A run's attempts, in order. $1 run id.
ATTEMPTS = "SELECT * FROM attempts WHERE run_id = $1 ORDER BY number"

# A run's lifecycle events for GetRun: its log lines and stream chunks are read
# by ListRunLogs and WatchRun instead (there may be thousands).
EVENTS = "SELECT * FROM run_events WHERE run_id = $1 AND type NOT IN ('log', 'stream') ORDER BY id"

# A run's children, in creation (then wait) order. $1 run id.
CHILDREN = (
    "SELECT r.id FROM runs r LEFT JOIN child_waits c ON c.parent_run_id = r.parent_run_id "
    "AND c.child_run_id = r.id WHERE r.parent_run_id = $1 "
    "ORDER BY r.created_at, c.position, c.idx, r.id"
)

# The children of a run's current wait, in order. $1 run id.
WAIT_CHILDREN = (
    "SELECT c.child_run_id FROM child_waits c JOIN waits w ON w.run_id = c.parent_run_id "
    "AND w.position = c.position WHERE c.parent_run_id = $1 ORDER BY c.idx"
)

# A run's unfinished children. $1 run id, $2 the terminal statuses.
UNFINISHED_CHILDREN = "SELECT id FROM runs WHERE parent_run_id = $1 AND status <> ALL($2::text[])"

# ListRuns: newest first, after the (created_at, id) cursor. One statement per
# index that can drive the query (by parent, by task, by tag, by time); every
# other filter is optional (NULL: no filter). $1 namespace, $2 task_id,
# $3 statuses, $4 tag, $5 parent run id, $6 cursor created_at, $7 cursor id,
# $8 limit, $9 queue, $10 created at or after, $11 created before.
# A queue has no index of its own: by time (runs_by_time) a queue's runs come
# in creation order, and PostgreSQL's custom plans (the parameters as values)
# make the time range an index condition, so a page reads about page size /
# the queue's share of runs index entries; a queue with few or no runs reads at
# most the namespace's runs (about 10-40 ms for 100,000 runs, EXPLAIN ANALYZE).
_LIST_FILTERS = (
    " AND ($2::text IS NULL OR task_id = $2)"
    " AND ($3::text[] IS NULL OR status = ANY($3))"
    " AND ($4::text IS NULL OR tags @> ARRAY[$4]::text[])"
    " AND ($5::uuid IS NULL OR parent_run_id = $5)"
    " AND ($9::text IS NULL OR queue = $9)"
    " AND ($10::timestamptz IS NULL OR created_at >= $10)"
    " AND ($11::timestamptz IS NULL OR created_at < $11)"
    " AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::uuid))"
    " ORDER BY created_at DESC, id DESC LIMIT $8"
)
# Each ListRuns statement runs with this first, in its transaction: a generic plan
# (which PostgreSQL may pick for a prepared statement after five runs) cannot
# tell which optional filters are NULL and scans the whole table (45 ms at
# 100,000 runs, against 0.4 ms for a custom plan on the index).
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"
LIST_RUNS = "SELECT * FROM runs WHERE namespace = $1" + _LIST_FILTERS
LIST_RUNS_BY_TASK = "SELECT * FROM runs WHERE namespace = $1 AND task_id = $2" + _LIST_FILTERS
LIST_RUNS_BY_TAG = "SELECT * FROM runs WHERE namespace = $1 AND tags @> ARRAY[$4]::text[]" + _LIST_FILTERS
LIST_RUNS_BY_PARENT = "SELECT * FROM runs WHERE namespace = $1 AND parent_run_id = $5" + _LIST_FILTERS

# ---- the event log after an id (WatchRun, WatchRuns) ------------------------------

# A run, its events after an id, oldest first (index run_events_by_run), and
# whether that id (0: none) is one of its events: one statement, one snapshot,
# because every change of a watched run is read with it. $1 run id,
# $2 namespace, $3 after id, $4 limit.
# The events come as one jsonb array (asyncpg decodes no composite type here),
# each `at` as microseconds since the epoch (not text in the session's time zone).
RUN_EVENTS_AFTER = (
    "SELECT r.*, coalesce((SELECT jsonb_agg(jsonb_build_object("
    "'id', e.id, 'type', e.type, 'attempt', e.attempt, 'details', e.details,"
    " 'at_us', (extract(epoch FROM e.at) * 1000000)::bigint) ORDER BY e.id)"
    " FROM (SELECT * FROM run_events WHERE run_id = $1 AND id > $3 ORDER BY id LIMIT $4) e), '[]')"
    " AS page_events, ($3 = 0 OR EXISTS (SELECT 1 FROM run_events WHERE run_id = $1 AND id = $3)) AS page_after_ok"
    " FROM runs r WHERE r.id = $1 AND r.namespace = $2"
)

# The highest event id, 0 when the log is empty (the primary key, read backwards).
LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM run_events"

# The events with ids in ($1, $2] of a namespace's runs, of task $4 (NULL: any)
# carrying tags $5 (NULL: any), oldest first, at most $6: a bounded range of the
# primary key, so a filter that matches little never scans the whole log.
# $3 namespace.
NAMESPACE_EVENTS_BETWEEN = (
    "SELECT e.* FROM run_events e JOIN runs r ON r.id = e.run_id"
    " WHERE e.id > $1 AND e.id <= $2 AND r.namespace = $3"
    " AND ($4::text IS NULL OR r.task_id = $4) AND ($5::text[] IS NULL OR r.tags @> $5::text[])"
    " ORDER BY e.id LIMIT $6"
)

# Runs by id. $1 the ids.
RUNS_BY_ID = "SELECT * FROM runs WHERE id = ANY($1::uuid[])"
