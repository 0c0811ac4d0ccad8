"""Backpressure (a queue's max_depth), against a real cluster (history,
matching, frontend, PostgreSQL, NATS): triggers and batches beyond it are
refused (QueueFullError, RESOURCE_EXHAUSTED through gRPC and grpcurl) and write
nothing; max_depth holds under concurrent triggers; and an idempotent retry
into a full queue returns the run it created.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from flow_helpers import (
    RPC_TIMEOUT,
    expect_rpc_error,
    queue_of,
    register_without_polling,
    start_flow_worker,
    wait_completed,
)
from harness import Cluster, assert_clean, grpcurl, json_payload, table_counts, wait_for

from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc
from worker_sdk import AsyncClient, Client, QueueFullError

JSON = "json/plain"


# ---- backpressure ---------------------------------------------------------------------


def test_max_depth_refuses_triggers_and_writes_nothing(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    q = client.update_queue("bounded", max_depth=10)
    assert q.max_depth == 10 and q.managed, q

    accepted = [client.trigger("flow-depth", {"i": i}).id for i in range(8)]
    before = table_counts(cluster)
    with pytest.raises(QueueFullError) as info:  # 8 + 3 > 10: refused whole
        client.batch_trigger([("flow-depth", {"batch": i}) for i in range(3)])
    assert "'bounded'" in str(info.value), info.value
    assert table_counts(cluster) == before, "a refused batch wrote rows"
    accepted += [r.id for r in client.batch_trigger([("flow-depth", {"batch": i}) for i in range(2)])]
    assert queue_of(client, "bounded").depth == 10

    before = table_counts(cluster)
    with pytest.raises(QueueFullError) as info:
        client.trigger("flow-depth", {"i": "eleventh"})
    message = str(info.value)
    assert "'bounded'" in message and "10" in message, message
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_clean(message)
    stub = run_service_pb2_grpc.RunServiceStub(cluster.channel())
    expect_rpc_error(
        lambda: stub.TriggerRun(
            rpb.TriggerRunRequest(task_id="flow-depth", payload=json_payload({"via": "grpc"})),
            timeout=RPC_TIMEOUT,
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "'bounded'",
    )
    proc = grpcurl(
        cluster.address,
        "cairn.v1.RunService/TriggerRun",
        data={"task_id": "flow-depth", "payload": {"data": "e30=", "encoding": JSON}},
    )
    assert proc.returncode != 0, proc.stdout
    assert "ResourceExhausted" in proc.stderr and "'bounded'" in proc.stderr, proc.stderr
    assert_clean(proc.stderr)
    assert table_counts(cluster) == before, "a refused trigger wrote rows"

    start_flow_worker(cluster, slots=1)
    wait_for(lambda: queue_of(client, "bounded").depth < 10, 20, message="the worker never drained the queue")
    accepted.append(client.trigger("flow-depth", {"i": "after drain"}).id)
    assert len(set(accepted)) == 11
    wait_completed(cluster, "flow-depth", 11)
    assert queue_of(client, "bounded").depth == 0

    before = table_counts(cluster)
    with pytest.raises(QueueFullError):  # 11 > 10 even into an empty queue
        client.batch_trigger([("flow-depth", {"big": i}) for i in range(11)])
    assert table_counts(cluster) == before, "a refused batch wrote rows"
    client.batch_trigger([("flow-depth", {"fits": i}) for i in range(10)])
    wait_completed(cluster, "flow-depth", 21)
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'flow-depth'") == 21


# ---- beyond the basics ---------------------------------------------------------------
# Kept last, so that under `pytest -x` a failure here does not hide the tests above.
# Each of these failed against the code it was written for; see the report.


def test_max_depth_holds_under_concurrent_triggers(cluster: Cluster, client: Client) -> None:
    """40 triggers at once into a queue with room for 5: exactly 5 get in. (Each
    trigger is its own transaction in history; the depth check must serialize
    them, as the concurrency and rate limits do with the queue row's lock.)"""
    register_without_polling(cluster)
    client.update_queue("bounded", max_depth=10)
    client.batch_trigger([("flow-depth", {"i": i}) for i in range(5)])

    async def race() -> list[Any]:
        async with AsyncClient(address=cluster.address) as ac:
            return await asyncio.gather(
                *[ac.trigger("flow-depth", {"race": i}) for i in range(40)], return_exceptions=True
            )

    results = asyncio.run(race())
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, QueueFullError) for e in refused), refused
    depth = queue_of(client, "bounded").depth
    print(
        f"\n[backpressure] 40 concurrent triggers with room for 5: {len(accepted)} accepted, "
        f"{len(refused)} refused; depth {depth} (max_depth 10)"
    )
    assert depth == cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'flow-depth'")
    assert len(accepted) == 5 and depth == 10, (
        f"max_depth 10 exceeded: {len(accepted)} of 40 concurrent triggers accepted, depth {depth}"
    )


def test_an_idempotent_retry_into_a_full_queue_returns_the_existing_run(
    cluster: Cluster, client: Client
) -> None:
    """A trigger whose answer was lost is retried with its idempotency key (the
    README's advice); if the queue filled up meanwhile, the retry must still
    return the run the first call created, not QueueFullError ("nothing was
    created"), which would be false."""
    register_without_polling(cluster)
    client.update_queue("bounded", max_depth=3)
    first = client.trigger("flow-depth", {"i": 0}, idempotency_key="order-1")
    client.batch_trigger([("flow-depth", {"i": i}) for i in (1, 2)])
    assert queue_of(client, "bounded").depth == 3
    before = table_counts(cluster)
    try:
        again = client.trigger("flow-depth", {"i": 0}, idempotency_key="order-1")
    except QueueFullError as exc:
        pytest.fail(f"the retry of an accepted trigger was refused as a full queue: {exc}")
    assert again.id == first.id
    assert table_counts(cluster) == before
