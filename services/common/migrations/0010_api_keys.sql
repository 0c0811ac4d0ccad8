-- Cairn schema, version 10: API keys (owned by matching). A key is shown once
-- when created and stored only as an HMAC-SHA256 of its secret part under a
-- per-key random salt; id is its public part. namespace '*' is a key for every
-- namespace (admin only).
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    namespace text NOT NULL,
    role text NOT NULL CHECK (role IN ('client', 'worker', 'admin')),
    name text NOT NULL DEFAULT '',
    salt bytea NOT NULL,
    hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_namespace ON api_keys (namespace, created_at DESC);
