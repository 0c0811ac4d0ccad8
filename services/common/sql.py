"""Every statement services/common runs: the migration runner's bookkeeping."""

# Serialises migrations across replicas starting together. $1 lock key
LOCK = "SELECT pg_advisory_lock($1)"

# Releases LOCK. $1 lock key
UNLOCK = "SELECT pg_advisory_unlock($1)"

# The applied migrations, created on first start. No parameters.
CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version int PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)

# The versions applied so far. -> version
APPLIED_VERSIONS = "SELECT version FROM schema_migrations"

# Records a migration as applied. $1 version, $2 file name
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
