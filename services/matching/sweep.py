"""The safety net for lost NATS notices: at every interval, wakes the pollers of
keys that have claimable work (read from history's ready set), and re-reads
which queues are limited; and, at most every FORGET_EVERY_SECONDS, deletes the
registrations of workers gone for WORKER_FORGOTTEN_SECONDS."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from cairn.limits import WORKER_FORGOTTEN_SECONDS
from services.matching.limited import LimitedQueues
from services.matching.sql import sweep as sql
from services.matching.sql import workers as worker_sql
from services.matching.waiters import Key, Waiters

log = logging.getLogger("cairn.matching.sweep")

FORGET_EVERY_SECONDS = 600.0


async def ready_keys(pool: asyncpg.Pool) -> list[Key]:
    """Keys with claimable entries (a key whose queue is full is woken too; its
    poll finds nothing and waits again)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql.READY_KEYS)
    return [(r["namespace"], r["task_id"]) for r in rows]


async def forget_workers(
    pool: asyncpg.Pool, seconds: float = WORKER_FORGOTTEN_SECONDS
) -> list[tuple[str, str]]:
    """Deletes the registrations not seen for `seconds` whose workers execute
    nothing; their (namespace, worker id)s."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(worker_sql.FORGET_WORKERS, seconds)
    return [(r["namespace"], r["worker_id"]) for r in rows]


class Sweeper:
    """Runs the sweep in the background until stopped."""

    def __init__(self, pool: asyncpg.Pool, limited: LimitedQueues, waiters: Waiters, interval: float) -> None:
        self.pool = pool
        self.limited = limited
        self.waiters = waiters
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        forget_at = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            try:
                if time.monotonic() >= forget_at:
                    forget_at = time.monotonic() + FORGET_EVERY_SECONDS
                    gone = await forget_workers(self.pool)
                    if gone:
                        days = WORKER_FORGOTTEN_SECONDS / 86400
                        log.info("forgot %d worker registration(s) not seen for %g days", len(gone), days)
                await self.limited.refresh()
                if not self.waiters.keys():
                    continue
                for key in await ready_keys(self.pool):
                    self.waiters.wake_all(key)
            except Exception:
                log.exception("sweep failed")
