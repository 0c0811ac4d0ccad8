"""Workers and the tasks they declare (matching owns both tables, and the
queues the tasks name)."""

from __future__ import annotations

import asyncpg

from cairn import retry_policy
from cairn.limits import WORKER_CONNECTED_SECONDS
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import worker_service_pb2 as wpb
from services.matching.sql import queues as queue_sql
from services.matching.sql import tasks as task_sql
from services.matching.sql import workers as worker_sql


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
        queues = [
            (request.namespace, t.queue or t.task_id, max(t.concurrency_limit, 0)) for t in request.tasks
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(task_sql.UPSERT_TASK, tasks)
            await conn.executemany(queue_sql.UPSERT_DECLARED_QUEUE, queues)
            await conn.execute(
                worker_sql.UPSERT_WORKER,
                request.namespace,
                request.worker_id,
                request.version,
                [t.task_id for t in request.tasks],
                request.slots,
            )

    async def worker(self, namespace: str, worker_id: str) -> asyncpg.Record | None:
        """The worker's registration, marked seen now (a poll's cache refresh)."""
        async with self.pool.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(worker_sql.TOUCH_WORKER, namespace, worker_id)
        return row

    async def workers(self, namespace: str) -> list[tuple[asyncpg.Record, int]]:
        """The namespace's workers, most recently seen first, with `connected`,
        each with how many attempts it is executing now."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(worker_sql.LIST_WORKERS, namespace, WORKER_CONNECTED_SECONDS)
            running = {
                r["worker_id"]: r["running"]
                for r in await conn.fetch(worker_sql.RUNNING_BY_WORKER, namespace)
            }
        return [(r, running.get(r["worker_id"], 0)) for r in rows]


def worker_info(r: asyncpg.Record, running: int = 0) -> qpb.WorkerInfo:
    """A workers row (with `connected`) and its executing attempts as a WorkerInfo."""
    info = qpb.WorkerInfo(
        worker_id=r["worker_id"],
        version=r["version"],
        task_ids=r["task_ids"],
        slots=r["slots"],
        connected=r["connected"],
        running=running,
    )
    info.registered_at.FromDatetime(r["registered_at"])
    info.last_seen_at.FromDatetime(r["last_seen_at"])
    return info
