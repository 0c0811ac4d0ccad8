-- Cairn schema, version 3: concurrency keys, fairness, rate limits, depth, pausing.

-- history: a run's concurrency key ('' when none), copied to its queue entries.
ALTER TABLE runs ADD COLUMN concurrency_key text NOT NULL DEFAULT '';
DROP INDEX runs_executing_by_queue;
CREATE INDEX runs_executing_by_group ON runs (namespace, queue, concurrency_key) WHERE status = 'executing';

-- matching: the ready set per concurrency key.
ALTER TABLE queue_entries ADD COLUMN concurrency_key text NOT NULL DEFAULT '';
CREATE INDEX queue_entries_by_key ON queue_entries (namespace, queue, concurrency_key, priority DESC, available_at);
CREATE INDEX queue_entries_depth ON queue_entries (namespace, queue);

-- matching: queue settings. managed: set through QueueService, so a task's
-- declaration no longer changes the limit.
ALTER TABLE queues
    ADD COLUMN rate_limit     int NOT NULL DEFAULT 0,
    ADD COLUMN rate_period_ms bigint NOT NULL DEFAULT 0,
    ADD COLUMN max_depth      int NOT NULL DEFAULT 0,
    ADD COLUMN paused         boolean NOT NULL DEFAULT false,
    ADD COLUMN managed        boolean NOT NULL DEFAULT false;

-- matching: the keys of queues that have keyed runs, with when each was last
-- served, so claims go round-robin between keys (fairness). Written by history
-- at trigger (insert) and at start (last_dispatched_at).
CREATE TABLE concurrency_keys (
    namespace          text NOT NULL,
    queue              text NOT NULL,
    key                text NOT NULL,
    last_dispatched_at timestamptz,
    PRIMARY KEY (namespace, queue, key)
);

-- history: attempt starts of rate-limited queues, for the sliding window.
CREATE TABLE queue_dispatches (
    namespace text NOT NULL,
    queue     text NOT NULL,
    key       text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dispatches_window ON queue_dispatches (namespace, queue, key, at);
