"""Per-test databases on a shared server, statements from sync test code, and
table counts (to show that a refused request wrote nothing).

A test database is either created empty (the services migrate it at start) or
cloned from a template made once per session with the migrations applied
(``create_template`` / ``clone_database``), which is cheaper than migrating."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from cairn_cli.embedded import database_url_for

T = TypeVar("T")

# Every table a test counts to show that a refused request wrote nothing.
ALL_TABLES = (
    "runs",
    "run_events",
    "queue_entries",
    "steps",
    "attempts",
    "timers",
    "waits",
    "child_waits",
    "run_inbox",
    "wait_tokens",
    "schedules",
    "tasks",
    "workers",
)
CONNECT_TIMEOUT = 10.0


def run_coro(factory: Callable[[], Awaitable[T]]) -> T:
    """Runs a coroutine to completion from sync code, even inside a running loop
    (then on a thread of its own)."""

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def new_database_name(test_name: str) -> str:
    """A unique, recognisable database name for a test: t_<test>_<hex>."""
    safe = "".join(c if c.isalnum() else "_" for c in test_name.lower()).strip("_")
    return f"t_{safe[:40]}_{secrets.token_hex(3)}"


def sql(database_url: str, query: str, *args: Any) -> list[Any]:
    """Runs one statement on a database (a short-lived asyncpg connection) and
    returns its rows (asyncpg Records; [] for none)."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(database_url, timeout=CONNECT_TIMEOUT)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_coro(run)


def table_counts_query(tables: Iterable[str] = ALL_TABLES) -> str:
    """One statement whose single row holds the row count of each table, by name."""
    return "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables)


def table_counts(cluster: Any, tables: Iterable[str] = ALL_TABLES) -> dict[str, int]:
    """The number of rows of each table of a cluster's database (anything with a
    ``sql(query)`` method), by name."""
    return dict(cluster.sql(table_counts_query(tables))[0])


async def create_template(admin_url: str, name: str, prepare: Callable[[str], Awaitable[None]]) -> str:
    """Creates database `name` (dropping a leftover of that name), runs
    ``prepare(url)`` on it (e.g. the migrations) and returns its URL. Every
    connection `prepare` opened must be closed before the template is cloned."""
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url: str = database_url_for(admin_url, name)
    await prepare(url)
    return url


async def clone_database(admin_url: str, template: str, name: str) -> str:
    """CREATE DATABASE name TEMPLATE template; returns the new database's URL."""
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    url: str = database_url_for(admin_url, name)
    return url


async def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE name, ending any session still connected to it."""
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
