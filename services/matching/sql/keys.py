"""Statements on the api_keys table (owned by matching)."""

_COLUMNS = "id, namespace, role, name, created_at, expires_at, revoked_at"

# A new key. $1 id, $2 namespace, $3 role, $4 name, $5 salt, $6 hash, $7 expires_at
CREATE_KEY = (
    "INSERT INTO api_keys (id, namespace, role, name, salt, hash, expires_at) "
    f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}"
)

# The bootstrap admin key, unless its id exists (a revoked one stays revoked).
# $1 id, $2 name, $3 salt, $4 hash -> id when it was created
ENSURE_KEY = (
    "INSERT INTO api_keys (id, namespace, role, name, salt, hash) VALUES ($1, '*', 'admin', $2, $3, $4) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)

# What checking a secret needs. $1 id
KEY_FOR_CHECK = f"SELECT {_COLUMNS}, salt, hash FROM api_keys WHERE id = $1"

# The keys of a namespace ('*': the keys for every namespace), newest first. $1 namespace
LIST_KEYS = f"SELECT {_COLUMNS} FROM api_keys WHERE namespace = $1 ORDER BY created_at DESC, id"

# Revokes a key of a namespace; an already revoked one keeps its time. $1 namespace, $2 id
REVOKE_KEY = (
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE namespace = $1 AND id = $2 "
    f"RETURNING {_COLUMNS}"
)
