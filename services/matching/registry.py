"""Workers and the tasks they declare (matching owns both tables, and the
queues the tasks name). A worker id belongs to the API key that registered it
(the frontend names the caller's key in metadata cairn.keys.CALLER_KEY_ID); a
task's declaration changes only with a new worker version."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc

from cairn import keys, retry_policy
from cairn.limits import WORKER_CONNECTED_SECONDS
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import permission_denied, precondition
from services.matching.sql import queues as queue_sql
from services.matching.sql import tasks as task_sql
from services.matching.sql import workers as worker_sql

# What a task declares, as TaskDefinition names the fields, in that order.
DECLARED = ("queue", "retry", "schedule", "timezone", "max_duration", "concurrency_limit")


def caller_key(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The id of the API key the frontend served this call for; None without
    one (auth off, or a call that did not come through the frontend)."""
    for key, value in context.invocation_metadata() or ():
        if key == keys.CALLER_KEY_ID:
            return value if isinstance(value, str) else value.decode()
    return None


def check_owner(worker: asyncpg.Record, worker_id: str, key_id: str | None) -> None:
    """PERMISSION_DENIED when the worker id belongs to another key than the
    caller's (no binding when either has none)."""
    if key_id is not None and worker["key_id"] is not None and worker["key_id"] != key_id:
        raise _taken(worker_id)


def _taken(worker_id: str) -> Exception:
    return permission_denied(
        f"worker_id {worker_id!r} belongs to another API key; a worker id is its "
        "registering key's (give each worker process its own id)"
    )


def declaration(t: wpb.TaskDefinition) -> dict[str, Any]:
    """A task's declaration as stored (tasks.declaration), keyed by DECLARED."""
    return {
        "queue": t.queue or t.task_id,
        "retry": retry_policy.to_dict(retry_policy.from_proto(t.retry if t.HasField("retry") else None)),
        "schedule": t.schedule,
        "timezone": t.timezone,
        "max_duration": round(t.max_duration.ToTimedelta().total_seconds() * 1000)
        if t.HasField("max_duration")
        else None,
        "concurrency_limit": max(t.concurrency_limit, 0),
    }


class Registry:
    """Records registrations: a worker id stays its key's; a task's declaration
    changes with a new worker version, and a different one under the version
    that made the stored one is refused."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def register(self, request: wpb.RegisterWorkerRequest, key_id: str | None = None) -> None:
        """Upserts the worker and every task it serves, in one transaction;
        PERMISSION_DENIED when the worker id is another key's, FAILED_PRECONDITION
        naming the task and the field when a task is declared differently under
        the version that declared it. A refusal writes nothing."""
        ns, version = request.namespace, request.version
        declared = sorted(((t, declaration(t)) for t in request.tasks), key=lambda td: td[0].task_id)
        async with self.pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchrow(
                worker_sql.UPSERT_WORKER,
                ns,
                request.worker_id,
                version,
                [t.task_id for t in request.tasks],
                request.slots,
                key_id,
            )
            if owner is None:
                raise _taken(request.worker_id)
            stored = {
                r["task_id"]: r
                for r in await conn.fetch(task_sql.DECLARATIONS, ns, [t.task_id for t, _ in declared])
            }
            for t, d in declared:
                old = stored.get(t.task_id)
                if old is None or old["declaration"] is None or old["version"] != version:
                    continue  # new, declared before versions were kept, or a new version
                changed = [f for f in DECLARED if old["declaration"].get(f) != d[f]]
                if changed:
                    raise precondition(
                        f"task {t.task_id!r}: {changed[0]} differs from its declaration by version "
                        f"{version!r}; declare a new version to change it"
                    )
            await conn.executemany(
                task_sql.UPSERT_TASK,
                [(ns, t.task_id, d["queue"], d["retry"], d["max_duration"], d, version) for t, d in declared],
            )
            await conn.executemany(
                queue_sql.UPSERT_DECLARED_QUEUE,
                [(ns, d["queue"], d["concurrency_limit"]) for _, d in declared],
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
    """A workers row (with `connected`) and its executing attempts as a
    WorkerInfo: a worker executing attempts is connected however long ago it
    polled (all its slots busy, it does not poll; a dead one's attempts end
    when their leases expire)."""
    info = qpb.WorkerInfo(
        worker_id=r["worker_id"],
        version=r["version"],
        task_ids=r["task_ids"],
        slots=r["slots"],
        connected=r["connected"] or running > 0,
        running=running,
    )
    info.registered_at.FromDatetime(r["registered_at"])
    info.last_seen_at.FromDatetime(r["last_seen_at"])
    return info
