-- Cairn schema, version 7: a run made by RunService.ReplayRun names the run it
-- replays (Run.replay_of; NULL for every other run). A nullable column without
-- a default is added without rewriting the table. No index: nothing lists runs
-- by it yet (add a partial one, WHERE replay_of IS NOT NULL, with such a read).
ALTER TABLE runs ADD COLUMN replay_of uuid;
