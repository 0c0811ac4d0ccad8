"""Matching's registry (issue 14): a worker id belongs to the API key that
registered it (the frontend names the caller's key in metadata
cairn-caller-key), so another key can neither register it nor poll as it; and
a task's declaration changes only with a new worker version: a different one
under the version that made the stored one is refused naming the task and the
field, with nothing written."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration

from cairn.keys import CALLER_KEY_ID
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "declared"
WORKER = "w-owned"


def definition(**fields: Any) -> wpb.TaskDefinition:
    base: dict[str, Any] = {
        "task_id": TASK,
        "queue": "q",
        "retry": cpb.RetryPolicy(max_attempts=3),
        "schedule": "0 * * * *",
        "timezone": "Europe/Paris",
        "max_duration": Duration(seconds=60),
        "concurrency_limit": 2,
    }
    base.update(fields)
    return wpb.TaskDefinition(**base)


def as_key(key_id: str | None) -> tuple[tuple[str, str], ...]:
    return () if key_id is None else ((CALLER_KEY_ID, key_id),)


async def register(
    services: Any,
    *tasks: wpb.TaskDefinition,
    version: str = "v1",
    key: str | None = None,
    worker_id: str = WORKER,
) -> Any:
    request = wpb.RegisterWorkerRequest(
        namespace=services.namespace, worker_id=worker_id, version=version, tasks=tasks, slots=1
    )
    return services.matching.RegisterWorker(request, metadata=as_key(key), timeout=5)


async def poll(services: Any, key: str | None, worker_id: str = WORKER) -> Any:
    request = wpb.PollAttemptRequest(namespace=services.namespace, worker_id=worker_id, wait=Duration())
    return services.matching.PollAttempt(request, metadata=as_key(key), timeout=5)


async def rows(services: Any, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(services.database_url, timeout=5)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def new_key(services: Any) -> str:
    """A worker key of the namespace, as the frontend would have authenticated
    (a binding to a key that is not valid lapses)."""
    created = await services.matching.CreateKey(
        kpb.CreateKeyRequest(namespace=services.namespace, role=kpb.KEY_ROLE_WORKER), timeout=5
    )
    key_id: str = created.key.id
    return key_id


TASK_ROW = "SELECT queue, retry::text, max_duration_ms, declaration::text, version FROM tasks"
QUEUE_ROW = "SELECT name, concurrency_limit FROM queues"


async def test_a_task_declared_differently_under_the_same_version_is_refused(services):
    await (await register(services, definition()))
    stored = (await rows(services, TASK_ROW), await rows(services, QUEUE_ROW))
    await (await register(services, definition()))  # the same declaration again: fine
    changes = {
        "queue": {"queue": "other"},
        "retry": {"retry": cpb.RetryPolicy(max_attempts=5)},
        "schedule": {"schedule": "*/5 * * * *"},
        "timezone": {"timezone": "UTC"},
        "max_duration": {"max_duration": Duration(seconds=61)},
        "concurrency_limit": {"concurrency_limit": 9},
    }
    before = await services.counts()
    for field, change in changes.items():
        refused = await services.refused(await register(services, definition(**change)))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused
        details = refused.details()
        assert f"task {TASK!r}: {field} differs" in details and "declare a new version" in details, details
        assert "'v1'" in details
    assert await services.counts() == before
    assert (await rows(services, TASK_ROW), await rows(services, QUEUE_ROW)) == stored

    # Another version's declaration is applied, and that version recorded.
    await (await register(services, definition(concurrency_limit=9, queue="q"), version="v2"))
    assert (await rows(services, "SELECT version, declaration->>'concurrency_limit' FROM tasks")) == [
        ("v2", "9")
    ]
    assert ("q", 9) in await rows(services, QUEUE_ROW)
    # v2 made it: v2 may not change it any more, v3 may.
    refused = await services.refused(await register(services, definition(), version="v2"))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "concurrency_limit" in refused.details()
    await (await register(services, definition(), version="v3"))
    assert (await rows(services, "SELECT version FROM tasks")) == [("v3",)]


async def test_a_worker_id_belongs_to_the_key_that_registered_it(services):
    k1, k2 = await new_key(services), await new_key(services)
    await (await register(services, definition(), key=k1))
    worker_row = "SELECT version, task_ids, slots, key_id FROM workers"
    bound = await rows(services, worker_row)
    assert bound[0][3] == k1
    assert (await (await poll(services, k1))).assignments == []

    before = await services.counts()
    for call in (register(services, definition(), version="v9", key=k2), poll(services, k2)):
        refused = await services.refused(await call)
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, refused
        assert repr(WORKER) in refused.details() and "another API key" in refused.details()
    assert await services.counts() == before
    assert await rows(services, worker_row) == bound

    # With no key (auth off) there is no binding either way, and k1 keeps it.
    await (await register(services, definition(), key=None))
    assert (await (await poll(services, None))).assignments == []
    assert (await rows(services, "SELECT key_id FROM workers")) == [(k1,)]
    refused = await services.refused(await poll(services, k2))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_worker_id_of_a_revoked_key_may_be_taken_by_another(services):
    old, new = await new_key(services), await new_key(services)
    await (await register(services, definition(), key=old))
    refused = await services.refused(await register(services, definition(), key=new))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    await services.matching.RevokeKey(kpb.RevokeKeyRequest(namespace=services.namespace, id=old), timeout=5)
    await (await register(services, definition(), key=new))
    assert (await rows(services, "SELECT key_id FROM workers")) == [(new,)]
