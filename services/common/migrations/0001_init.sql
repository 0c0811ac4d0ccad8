-- Cairn schema, version 1. Each table names the service that owns it: only that
-- service changes its rows, except where noted.

-- matching: tasks declared by workers, with the queue and retry policy they declare.
CREATE TABLE tasks (
    namespace   text NOT NULL,
    task_id     text NOT NULL,
    queue       text NOT NULL,
    retry       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, task_id)
);

-- matching: registered workers.
CREATE TABLE workers (
    namespace     text NOT NULL,
    worker_id     text NOT NULL,
    version       text NOT NULL,
    task_ids      text[] NOT NULL,
    slots         int NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, worker_id)
);

-- matching: the ready set. History inserts and deletes entries inside the same
-- transactions that change a run's state (so a run is queued exactly when its
-- entry exists); matching only claims them (claim_token, claimed_until).
CREATE TABLE queue_entries (
    run_id        uuid PRIMARY KEY,
    namespace     text NOT NULL,
    task_id       text NOT NULL,
    queue         text NOT NULL,
    priority      int NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL DEFAULT now(),
    claim_token   uuid,
    claimed_until timestamptz
);
CREATE INDEX queue_entries_ready ON queue_entries (namespace, task_id, priority DESC, available_at);

-- history: runs and their state.
CREATE TABLE runs (
    id              uuid PRIMARY KEY,
    namespace       text NOT NULL,
    task_id         text NOT NULL,
    queue           text NOT NULL,
    status          text NOT NULL,
    input           bytea NOT NULL,
    input_encoding  text NOT NULL,
    output          bytea,
    output_encoding text,
    error           jsonb,
    idempotency_key text,
    attempt_count   int NOT NULL DEFAULT 0,
    retry           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    next_attempt_at timestamptz
);
CREATE UNIQUE INDEX runs_idempotency ON runs (namespace, task_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_time ON runs (namespace, created_at DESC, id DESC);
CREATE INDEX runs_by_task ON runs (namespace, task_id, created_at DESC, id DESC);

-- history: one row per attempt.
CREATE TABLE attempts (
    run_id         uuid NOT NULL REFERENCES runs (id),
    number         int NOT NULL,
    status         text NOT NULL,
    worker_id      text NOT NULL,
    worker_version text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    error          jsonb,
    retry_delay_ms bigint,
    PRIMARY KEY (run_id, number)
);

-- history: the step journal. One record per (run, position), never replaced.
CREATE TABLE steps (
    run_id          uuid NOT NULL REFERENCES runs (id),
    position        int NOT NULL,
    name            text NOT NULL,
    status          text NOT NULL,
    output          bytea,
    output_encoding text,
    error           jsonb,
    attempt         int NOT NULL,
    tries           int NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, position)
);

-- history: the append-only event log of every run.
CREATE TABLE run_events (
    id       bigserial PRIMARY KEY,
    run_id   uuid NOT NULL,
    type     text NOT NULL,
    attempt  int NOT NULL DEFAULT 0,
    details  jsonb NOT NULL DEFAULT '{}',
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_by_run ON run_events (run_id, id);

-- history: every timer (attempt leases, retry backoffs, wake-ups), one per run and kind.
CREATE TABLE timers (
    run_id  uuid NOT NULL,
    kind    text NOT NULL,
    attempt int NOT NULL,
    due_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);
