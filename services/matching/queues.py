"""Queue settings and state (matching owns the queues table): limits, rate
limits, maximum depth, pausing, and the counts ListQueues shows."""

from __future__ import annotations

import asyncpg

from cairn.v1 import queue_service_pb2 as qpb
from services.common.errors import not_found

QUEUE_WITH_COUNTS = (
    "SELECT q.*, (SELECT count(*) FROM queue_entries e WHERE e.namespace = q.namespace "
    "AND e.queue = q.name) AS depth, (SELECT count(*) FROM runs r WHERE r.namespace = q.namespace "
    "AND r.queue = q.name AND r.status = 'executing') AS running FROM queues q"
)


def to_proto(r: asyncpg.Record) -> qpb.Queue:
    q = qpb.Queue(
        name=r["name"],
        namespace=r["namespace"],
        concurrency_limit=r["concurrency_limit"],
        max_depth=r["max_depth"],
        paused=r["paused"],
        depth=r["depth"],
        running=r["running"],
        managed=r["managed"],
    )
    if r["rate_limit"]:
        q.rate_limit.limit = r["rate_limit"]
        q.rate_limit.period.FromMilliseconds(r["rate_period_ms"])
    q.updated_at.FromDatetime(r["updated_at"])
    return q


class QueueStore:
    """Transactions on queue settings."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, namespace: str, name: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                QUEUE_WITH_COUNTS + " WHERE q.namespace = $1 AND q.name = $2", namespace, name
            )
        if row is None:
            raise not_found(f"queue {name!r} not found in namespace {namespace!r}")
        return row

    async def update(self, r: qpb.UpdateQueueRequest) -> asyncpg.Record:
        """Creates or changes a queue; from now on its settings are managed here."""
        rate = r.rate_limit.limit if r.HasField("rate_limit") else None
        period = r.rate_limit.period.ToMilliseconds() if r.HasField("rate_limit") else None
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO queues (namespace, name, concurrency_limit, rate_limit, rate_period_ms, max_depth, "
                "managed) VALUES ($1, $2, coalesce($3, 0), coalesce($4, 0), coalesce($5, 0), coalesce($6, 0), true) "
                "ON CONFLICT (namespace, name) DO UPDATE SET "
                "concurrency_limit = coalesce($3, queues.concurrency_limit), "
                "rate_limit = coalesce($4, queues.rate_limit), rate_period_ms = coalesce($5, queues.rate_period_ms), "
                "max_depth = coalesce($6, queues.max_depth), managed = true, updated_at = now()",
                r.namespace,
                r.name,
                r.concurrency_limit if r.HasField("concurrency_limit") else None,
                rate,
                period,
                r.max_depth if r.HasField("max_depth") else None,
            )
        return await self.get(r.namespace, r.name)

    async def set_paused(self, namespace: str, name: str, paused: bool) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            done = await conn.fetchval(
                "UPDATE queues SET paused = $3, updated_at = now() "
                "WHERE namespace = $1 AND name = $2 RETURNING name",
                namespace,
                name,
                paused,
            )
        if done is None:
            raise not_found(f"queue {name!r} not found in namespace {namespace!r}")
        return await self.get(namespace, name)

    async def list(self, namespace: str) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(QUEUE_WITH_COUNTS + " WHERE q.namespace = $1 ORDER BY q.name", namespace)

    async def task_ids(self, namespace: str, name: str) -> list[str]:
        """The tasks on a queue: whose pollers to wake when it changes."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT task_id FROM tasks WHERE namespace = $1 AND queue = $2", namespace, name
            )
        return [r["task_id"] for r in rows]
