"""cairn_queue_depth and cairn_queue_executing per queue (services/common/metrics.py),
read from the database when Prometheus scrapes matching's /metrics, so they are
exact at that moment and cost nothing between scrapes."""

from __future__ import annotations

import asyncio

import asyncpg
from prometheus_client.core import Metric

from services.common import metrics
from services.matching.sql import queues as sql

READ_TIMEOUT_SECONDS = 5.0


class QueueCounts:
    """Reads every queue's depth and executing runs on the service's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def read(self) -> list[tuple[str, str, int, int]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql.QUEUE_COUNTS)
        return [(r["namespace"], r["name"], r["depth"], r["running"]) for r in rows]


def collector(pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> metrics.LoopCollector:
    """The collector to register while matching serves /metrics."""

    def families(rows: list[tuple[str, str, int, int]]) -> list[Metric]:
        return metrics.queue_families(rows)

    return metrics.LoopCollector(loop, QueueCounts(pool).read, families, READ_TIMEOUT_SECONDS)
