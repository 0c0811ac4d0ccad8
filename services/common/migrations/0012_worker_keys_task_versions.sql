-- Cairn schema, version 12 (matching's tables). A worker id belongs to the API
-- key that registered it (key_id; NULL: registered without one, e.g. with
-- --insecure-no-auth): a registration or poll of that id with another key is
-- refused while that key is valid. A task keeps its whole declaration and the
-- worker version that made it: a different declaration under the same version
-- is refused, under another version applied and the version recorded.
ALTER TABLE workers ADD COLUMN key_id text;
ALTER TABLE tasks ADD COLUMN declaration jsonb, ADD COLUMN version text;
