"""Queue settings and state (matching owns the queues table): limits, rate
limits, maximum depth, pausing, and the counts ListQueues shows."""

from __future__ import annotations

import asyncpg

from cairn.v1 import queue_service_pb2 as qpb
from services.common.errors import not_found
from services.matching.sql import queues as sql
from services.matching.sql import tasks as task_sql


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
            row: asyncpg.Record | None = await conn.fetchrow(sql.GET_QUEUE, namespace, name)
        if row is None:
            raise not_found(f"queue {name!r} not found in namespace {namespace!r}")
        return row

    async def update(self, r: qpb.UpdateQueueRequest) -> asyncpg.Record:
        """Creates or changes a queue; from now on its settings are managed here."""
        rate = r.rate_limit.limit if r.HasField("rate_limit") else None
        period = r.rate_limit.period.ToMilliseconds() if r.HasField("rate_limit") else None
        async with self.pool.acquire() as conn:
            await conn.execute(
                sql.UPSERT_MANAGED_QUEUE,
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
            done = await conn.fetchval(sql.SET_PAUSED, namespace, name, paused)
        if done is None:
            raise not_found(f"queue {name!r} not found in namespace {namespace!r}")
        return await self.get(namespace, name)

    async def in_namespace(self, namespace: str) -> list[asyncpg.Record]:
        """Every queue of a namespace, by name."""
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql.LIST_QUEUES, namespace)
        return rows

    async def task_ids(self, namespace: str, name: str) -> list[str]:
        """The tasks on a queue: whose pollers to wake when it changes."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(task_sql.TASK_IDS_OF_QUEUE, namespace, name)
        return [r["task_id"] for r in rows]
