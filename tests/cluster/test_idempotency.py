"""Idempotency keys end to end, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): a trigger with a key already used
returns the first run (before and after it finished) and the task runs once,
also when several triggers with one fresh key race.

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks` (api_helpers.py starts them).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
from api_helpers import RPC_TIMEOUT, read_lines, start_basic_worker
from harness import Cluster, auth, json_payload, run_stub

from cairn import keys
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc
from worker_sdk import Client

# ---- idempotency --------------------------------------------------------------------


def test_idempotency_key_returns_the_first_run_and_runs_it_once(cluster: Cluster, tmp_path: Path) -> None:
    counter = tmp_path / "counted.txt"
    start_basic_worker(cluster, env={"BASIC_TASKS_COUNTER": str(counter)})
    stub = run_stub(cluster)
    key = "order-42"

    first = stub.TriggerRun(
        rpb.TriggerRunRequest(task_id="counted", payload=json_payload({"n": 1}), idempotency_key=key),
        timeout=RPC_TIMEOUT,
    )
    second = stub.TriggerRun(
        rpb.TriggerRunRequest(task_id="counted", payload=json_payload({"n": 2}), idempotency_key=key),
        timeout=RPC_TIMEOUT,
    )
    assert not first.existing
    assert second.existing
    assert second.run.id == first.run.id
    assert second.run.idempotency_key == key
    run_id = first.run.id

    with Client(address=cluster.address) as client:
        again = client.trigger("counted", {"n": 3}, idempotency_key=key)
        assert again.id == run_id
        done = client.wait(run_id, timeout=20)
        assert done.status == "completed"
        assert done.output == {"counted": True, "payload": {"n": 1}}, (
            "the first trigger's payload is the one that runs"
        )
        # After it finished, the key still names the same run.
        late = stub.TriggerRun(
            rpb.TriggerRunRequest(task_id="counted", payload=json_payload({"n": 4}), idempotency_key=key),
            timeout=RPC_TIMEOUT,
        )
        assert late.existing and late.run.id == run_id
        assert late.run.status == cpb.RUN_STATUS_COMPLETED

        # Another key is another run.
        other = client.trigger("counted", {"n": 5}, idempotency_key="order-43")
        assert other.id != run_id
        assert client.wait(other.id, timeout=20).status == "completed"

    # Concurrent triggers with one fresh key: one run, created by exactly one of them.
    async def race(n: int) -> list[rpb.TriggerRunResponse]:
        async with grpc.aio.insecure_channel(cluster.address) as channel:
            astub = run_service_pb2_grpc.RunServiceStub(channel)
            return list(
                await asyncio.gather(
                    *(
                        astub.TriggerRun(
                            rpb.TriggerRunRequest(
                                task_id="counted",
                                payload=json_payload({"race": i}),
                                idempotency_key="order-44",
                            ),
                            timeout=RPC_TIMEOUT,
                            metadata=(keys.bearer(auth.ADMIN_KEY),),
                        )
                        for i in range(n)
                    )
                )
            )

    raced = asyncio.run(race(8))
    assert len({r.run.id for r in raced}) == 1, [r.run.id for r in raced]
    assert sum(not r.existing for r in raced) == 1
    raced_id = raced[0].run.id
    with Client(address=cluster.address) as client:
        assert client.wait(raced_id, timeout=20).status == "completed"

    assert cluster.sql_value("SELECT count(*) FROM runs WHERE idempotency_key = $1", key) == 1
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE idempotency_key = 'order-44'") == 1
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'counted'") == 3
    assert (
        cluster.sql_value(
            "SELECT count(*) FROM run_events WHERE run_id = $1 AND type = 'triggered'", uuid.UUID(run_id)
        )
        == 1
    )
    assert cluster.sql_value("SELECT count(*) FROM attempts WHERE run_id = $1", uuid.UUID(run_id)) == 1
    lines = read_lines(counter)
    assert sorted(lines) == sorted([run_id, other.id, raced_id]), lines
    assert lines.count(run_id) == 1
