-- Cairn schema, version 11: each attempt keeps the unguessable token handed to
-- its worker in AttemptAssignment.attempt_token (192 random bits, made by
-- history when it starts the attempt). Every heartbeat and write of the attempt
-- must carry it: the fence of each one compares it with this column in the same
-- statement. NULL only for attempts started before this version, whose writes
-- are then refused (their leases expire and the runs' retry policies apply). A
-- nullable column is added without rewriting the table.
ALTER TABLE attempts ADD COLUMN token text;
