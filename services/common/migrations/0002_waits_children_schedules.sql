-- Cairn schema, version 2: durable waits, child runs, trigger options, schedules.

-- history: options and links of a run. failure_count drives the retry policy
-- (a resumed wait starts a new attempt but is no failure); exec_ms sums the
-- attempts' execution time for max_duration.
ALTER TABLE runs
    ADD COLUMN failure_count   int NOT NULL DEFAULT 0,
    ADD COLUMN parent_run_id   uuid,
    ADD COLUMN priority        int NOT NULL DEFAULT 0,
    ADD COLUMN tags            text[] NOT NULL DEFAULT '{}',
    ADD COLUMN metadata        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN ttl_ms          bigint,
    ADD COLUMN max_duration_ms bigint,
    ADD COLUMN exec_ms         bigint NOT NULL DEFAULT 0,
    ADD COLUMN schedule_id     text;
CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_by_tag ON runs USING gin (tags);

-- matching: a task's declared execution budget, copied onto its runs.
ALTER TABLE tasks ADD COLUMN max_duration_ms bigint;

-- matching: queue limits. A start counts the queue's executing runs under a
-- lock on this row, in the same transaction that starts the attempt, so the
-- limit holds; the slot is free as soon as the attempt ends, whatever ends it.
CREATE TABLE queues (
    namespace         text NOT NULL,
    name              text NOT NULL,
    concurrency_limit int NOT NULL DEFAULT 0,   -- 0: no limit
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name)
);
CREATE INDEX runs_executing_by_queue ON runs (namespace, queue) WHERE status = 'executing';

-- history: the one wait of a WAITING run. Resolving it records the step at
-- `position` and queues the run again, in one transaction.
CREATE TABLE waits (
    run_id     uuid PRIMARY KEY,
    namespace  text NOT NULL,
    kind       text NOT NULL,          -- sleep | event | token | children
    position   int NOT NULL,
    name       text NOT NULL,
    event_name text,
    event_key  text,
    token_id   text,
    timeout_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waits_by_event ON waits (namespace, event_name, event_key) WHERE kind = 'event';
CREATE INDEX waits_by_token ON waits (token_id) WHERE kind = 'token';

-- history: the children a parent's wait at `position` waits for, in order.
CREATE TABLE child_waits (
    parent_run_id uuid NOT NULL,
    position      int NOT NULL,
    idx           int NOT NULL,
    child_run_id  uuid NOT NULL,
    PRIMARY KEY (parent_run_id, position, idx)
);

-- history: events sent to a run by id before it waits for them.
CREATE TABLE run_inbox (
    id               bigserial PRIMARY KEY,
    run_id           uuid NOT NULL,
    name             text NOT NULL,
    key              text NOT NULL DEFAULT '',
    payload          bytea NOT NULL,
    payload_encoding text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_inbox_by_run ON run_inbox (run_id, name, key, id);

-- history: wait tokens (human in the loop).
CREATE TABLE wait_tokens (
    id               text PRIMARY KEY,
    namespace        text NOT NULL,
    run_id           uuid,
    status           text NOT NULL,    -- pending | completed
    payload          bytea,
    payload_encoding text,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    timeout_at       timestamptz
);
CREATE UNIQUE INDEX wait_tokens_idempotency ON wait_tokens (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- history: schedules, declared with a task or created through the API.
CREATE TABLE schedules (
    namespace        text NOT NULL,
    id               text NOT NULL,
    task_id          text NOT NULL,
    cron             text NOT NULL,
    timezone         text NOT NULL,
    payload          bytea,
    payload_encoding text,
    dedup_key        text NOT NULL,
    paused           boolean NOT NULL DEFAULT false,
    declared         boolean NOT NULL DEFAULT false,
    next_fire_at     timestamptz NOT NULL,
    last_fired_at    timestamptz,
    last_run_id      uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, id)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
