"""The PostgreSQL pool and the numbered migrations every service applies at start."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common import sql

log = logging.getLogger("cairn.db")
MIGRATION_LOCK = 0x6361_6972  # advisory lock key: "cair"


def redacted_url(url: str) -> str:
    """url with its password, if any, shown as ***, for a log line or a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def connect_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    wait_seconds: float = 60.0,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """A connection pool, retrying while the database is still starting. Its
    statements use generic plans: they are prepared once per connection, and
    re-planning the claim and transition statements on every call cost
    PostgreSQL more CPU than running them (measured with bench/run.py)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                server_settings={"plan_cache_mode": "force_generic_plan", **(server_settings or {})},
            )
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot connect to the database at {redacted_url(url)}: {exc}") from exc
            log.warning("database not reachable yet (%s); retrying", exc)
            await asyncio.sleep(0.5)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (one round trip per use). An
    open transaction is still rolled back by asyncpg; the services keep no other
    session state (no LISTEN, and the migration lock is released explicitly)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb columns as Python values."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    found = []
    for entry in resources.files("services.common").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> None:
    """Applies missing migrations under an advisory lock, so replicas starting
    together apply each one exactly once."""
    async with pool.acquire() as conn:
        await conn.execute(sql.LOCK, MIGRATION_LOCK)
        try:
            await conn.execute(sql.CREATE_MIGRATIONS_TABLE)
            done = {r["version"] for r in await conn.fetch(sql.APPLIED_VERSIONS)}
            for version, name, migration in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration)
                    await conn.execute(sql.RECORD_MIGRATION, version, name)
                log.info("applied migration %s", name)
        finally:
            await conn.execute(sql.UNLOCK, MIGRATION_LOCK)
