"""Waits (sleeps, events, tokens, children), the event inbox and wait tokens."""

from __future__ import annotations

# ---- waits -----------------------------------------------------------------------

# A suspended run's wait. $1 run id, $2 namespace, $3 kind, $4 position, $5 name,
# $6 event name, $7 event key, $8 token id, $9 timeout at.
INSERT_WAIT = (
    "INSERT INTO waits (run_id, namespace, kind, position, name, event_name, event_key, token_id, "
    "timeout_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *"
)

# The run now waits. $1 run id, $2 its timeout (next_attempt_at).
SET_WAITING = (
    "UPDATE runs SET status = 'waiting', updated_at = now(), next_attempt_at = $2 WHERE id = $1 RETURNING *"
)

# A run's wait. $1 run id.
WAIT_OF_RUN = "SELECT * FROM waits WHERE run_id = $1"

# A run's wait for one event. $1 run id, $2 event name, $3 key.
EVENT_WAIT_OF_RUN = (
    "SELECT * FROM waits WHERE run_id = $1 AND kind = 'event' AND event_name = $2 AND event_key = $3"
)

# The runs waiting for an event. $1 namespace, $2 event name, $3 key.
RUNS_WAITING_FOR_EVENT = (
    "SELECT run_id FROM waits WHERE namespace = $1 AND kind = 'event' AND event_name = $2 AND event_key = $3"
)

# ---- children --------------------------------------------------------------------

# A child of a children wait. $1 parent run id, $2 position, $3 index, $4 child run id.
ADD_CHILD_WAIT = (
    "INSERT INTO child_waits (parent_run_id, position, idx, child_run_id) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
)

# The children of a wait, in order, with their results. $1 parent run id, $2 position.
CHILD_RESULTS = (
    "SELECT r.id, r.status, r.output, r.output_encoding, r.error FROM child_waits c "
    "JOIN runs r ON r.id = c.child_run_id WHERE c.parent_run_id = $1 AND c.position = $2 "
    "ORDER BY c.idx"
)

# ---- the event inbox -------------------------------------------------------------

# Takes the oldest buffered event (name, key) of a run. $1 run id, $2 name, $3 key.
TAKE_BUFFERED_EVENT = (
    "DELETE FROM run_inbox WHERE id = (SELECT id FROM run_inbox WHERE run_id = $1 AND name = $2 "
    "AND key = $3 ORDER BY id LIMIT 1) RETURNING payload, payload_encoding"
)

# Keeps an event until the run waits for it. $1 run id, $2 name, $3 key, $4 payload, $5 encoding.
BUFFER_EVENT = (
    "INSERT INTO run_inbox (run_id, name, key, payload, payload_encoding) VALUES ($1, $2, $3, $4, $5)"
)

# ---- wait tokens -----------------------------------------------------------------

# A new token (or none when its idempotency key is taken). $1 id, $2 namespace,
# $3 run id, $4 idempotency key, $5 timeout seconds (NULL: none).
CREATE_TOKEN = (
    "INSERT INTO wait_tokens (id, namespace, run_id, status, idempotency_key, timeout_at) "
    "VALUES ($1, $2, $3, 'pending', $4, CASE WHEN $5::float8 IS NULL THEN NULL "
    "ELSE now() + make_interval(secs => $5) END) "
    "ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *"
)

# The token of an idempotency key. $1 namespace, $2 key.
TOKEN_BY_IDEMPOTENCY_KEY = "SELECT * FROM wait_tokens WHERE namespace = $1 AND idempotency_key = $2"

# A token. $1 id, $2 namespace.
TOKEN = "SELECT * FROM wait_tokens WHERE id = $1 AND namespace = $2"
# A token, share-locked (a run suspends on it). $1 id, $2 namespace.
TOKEN_SHARED = "SELECT * FROM wait_tokens WHERE id = $1 AND namespace = $2 FOR SHARE"
# A token in any namespace. $1 id.
TOKEN_BY_ID = "SELECT * FROM wait_tokens WHERE id = $1"

# A token locked for completion, with whether it timed out. $1 id, $2 namespace.
LOCK_TOKEN = (
    "SELECT *, timeout_at < now() AS expired FROM wait_tokens WHERE id = $1 AND namespace = $2 FOR UPDATE"
)

# Completes a token. $1 id, $2 payload, $3 encoding.
COMPLETE_TOKEN = (
    "UPDATE wait_tokens SET status = 'completed', payload = $2, payload_encoding = $3, "
    "completed_at = now() WHERE id = $1 RETURNING *"
)

# The runs waiting on a token. $1 token id.
RUNS_WAITING_ON_TOKEN = "SELECT run_id FROM waits WHERE kind = 'token' AND token_id = $1"
