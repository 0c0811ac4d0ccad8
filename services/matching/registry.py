"""Workers and the tasks they declare (matching owns both tables)."""

from __future__ import annotations

import asyncpg

from cairn import retry_policy
from cairn.v1 import worker_service_pb2 as wpb


class Registry:
    """Records registrations; a task's latest declaration wins."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def register(self, request: wpb.RegisterWorkerRequest) -> None:
        """Upserts the worker and every task it serves, in one transaction."""
        tasks = [
            (
                request.namespace,
                t.task_id,
                t.queue or t.task_id,
                retry_policy.to_dict(retry_policy.from_proto(t.retry if t.HasField("retry") else None)),
                round(t.max_duration.ToTimedelta().total_seconds() * 1000)
                if t.HasField("max_duration")
                else None,
            )
            for t in request.tasks
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO tasks (namespace, task_id, queue, retry, max_duration_ms) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, task_id) DO UPDATE SET "
                "queue = EXCLUDED.queue, retry = EXCLUDED.retry, "
                "max_duration_ms = EXCLUDED.max_duration_ms, updated_at = now()",
                tasks,
            )
            await conn.executemany(
                "INSERT INTO queues (namespace, name, concurrency_limit) VALUES ($1, $2, $3) "
                "ON CONFLICT (namespace, name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit, "
                "updated_at = now() WHERE NOT queues.managed",
                [
                    (request.namespace, t.queue or t.task_id, max(t.concurrency_limit, 0))
                    for t in request.tasks
                ],
            )
            await conn.execute(
                "INSERT INTO workers (namespace, worker_id, version, task_ids, slots) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (namespace, worker_id) DO UPDATE SET "
                "version = EXCLUDED.version, task_ids = EXCLUDED.task_ids, slots = EXCLUDED.slots, "
                "last_seen_at = now()",
                request.namespace,
                request.worker_id,
                request.version,
                [t.task_id for t in request.tasks],
                request.slots,
            )

    async def worker(self, namespace: str, worker_id: str) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT * FROM workers WHERE namespace = $1 AND worker_id = $2", namespace, worker_id
            )
