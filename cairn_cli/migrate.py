"""`cairn migrate`: applies the database migrations the services would apply
at start (services.common.db.migrate, under its advisory lock), then exits 0.
Deployments run it once before the services (compose's one-shot `migrate`
service, Kubernetes' migration Job), so a schema change happens once, before
any replica of the new version serves; the services still migrate at start,
where it is then a no-op."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from services.common import db, logs
from services.common.config import DEFAULT_DATABASE_URL, env

log = logging.getLogger("cairn.migrate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cairn migrate", description="Apply the database migrations, then exit.")
    p.add_argument(
        "--database-url",
        default=env("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL (CAIRN_DATABASE_URL)",
    )
    p.add_argument(
        "--wait-seconds",
        type=float,
        default=60.0,
        help="how long to wait for the database to accept connections (default 60)",
    )
    return p


async def run(database_url: str, wait_seconds: float = 60.0) -> int:
    """Applies the missing migrations; the version the database is then at."""
    pool = await db.connect_pool(database_url, min_size=1, max_size=1, wait_seconds=wait_seconds)
    try:
        await db.migrate(pool)
    finally:
        await pool.close()
    return db.migrations()[-1][0]


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logs.setup("migrate")
    try:
        version = asyncio.run(run(args.database_url, args.wait_seconds))
    except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
        sys.exit(f"cairn migrate: {exc}")
    log.info("the database at %s is at migration %04d", db.redacted_url(args.database_url), version)
