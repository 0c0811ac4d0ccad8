-- Cairn schema, version 13: one row saying when a history replica was last
-- seen running (services/history/liveness.py). Every running replica updates it
-- about once a second; a replica that finds it older than a few seconds knows
-- that no history replica ran in between, and the leases that fell due then get
-- a grace instead of crashing attempts whose workers kept running. -infinity
-- until the first beat: a cluster upgraded to this version was not running.
CREATE TABLE history_liveness (
    id      int PRIMARY KEY CHECK (id = 1),
    seen_at timestamptz NOT NULL
);
INSERT INTO history_liveness (id, seen_at) VALUES (1, '-infinity');
