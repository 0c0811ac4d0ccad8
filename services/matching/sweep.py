"""The safety net for lost NATS notices: at every interval, wakes the pollers of
keys that have claimable work (read from history's ready set), and re-reads
which queues are limited."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from services.matching.limited import LimitedQueues
from services.matching.sql import sweep as sql
from services.matching.waiters import Key, Waiters

log = logging.getLogger("cairn.matching.sweep")


async def ready_keys(pool: asyncpg.Pool) -> list[Key]:
    """Keys with claimable entries (a key whose queue is full is woken too; its
    poll finds nothing and waits again)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql.READY_KEYS)
    return [(r["namespace"], r["task_id"]) for r in rows]


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
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.limited.refresh()
                if not self.waiters.keys():
                    continue
                for key in await ready_keys(self.pool):
                    self.waiters.wake_all(key)
            except Exception:
                log.exception("sweep failed")
