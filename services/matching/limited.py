"""Which queues have a concurrency limit: a run of such a queue that ends frees
a slot, so its pollers are woken."""

from __future__ import annotations

import asyncpg

from services.matching.sql import queues as sql


class LimitedQueues:
    """The (namespace, queue) pairs with a concurrency limit, re-read on every
    queue change and at each sweep."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._names: set[tuple[str, str]] = set()

    def __contains__(self, queue: tuple[str, str]) -> bool:
        return queue in self._names

    async def refresh(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql.LIMITED_QUEUES)
        self._names = {(r["namespace"], r["name"]) for r in rows}
