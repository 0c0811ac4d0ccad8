"""The public API end to end, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): the Python client, grpcurl as a client and as a
worker in no particular language, idempotency, validation of bad input,
cancel, and the `cairn` command line.

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness import (
    REPO_ROOT,
    TESTS_DIR,
    Cluster,
    WorkerProcess,
    assert_clean,
    b64_json,
    grpcurl,
    grpcurl_call,
    json_field,
    json_payload,
    table_counts,
    wait_for,
    wait_registered,
)

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc, worker_service_pb2_grpc
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import AsyncClient, Client, FailedPreconditionError, InvalidArgumentError, NotFoundError

APPS_DIR = TESTS_DIR / "apps"
TASKS_MODULE = "basic_tasks"
JSON = "json/plain"
RPC_TIMEOUT = 15.0


# ---- helpers ------------------------------------------------------------------------


def start_basic_worker(
    cluster: Cluster, *, slots: int = 4, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A `cairn worker basic_tasks` process; returns once its tasks are registered."""
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, slots=slots, env=env)
    wait_registered(cluster, "three-steps", "echo", "counted", "gated", worker=worker)
    return worker


def run_stub(cluster: Cluster) -> run_service_pb2_grpc.RunServiceStub:
    return run_service_pb2_grpc.RunServiceStub(cluster.channel())


def worker_stub(cluster: Cluster) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(cluster.channel())


def decode_b64_json(data: str | None) -> Any:
    return json.loads(base64.b64decode(data or "")) if data else None


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def register(wstub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str, *task_ids: str) -> None:
    wstub.RegisterWorker(
        wpb.RegisterWorkerRequest(
            worker_id=worker_id,
            version="test-1",
            slots=1,
            tasks=[wpb.TaskDefinition(task_id=t, retry=cpb.RetryPolicy(max_attempts=1)) for t in task_ids],
        ),
        timeout=RPC_TIMEOUT,
    )


def poll(
    wstub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str, task_id: str
) -> wpb.AttemptAssignment:
    response = wstub.PollAttempt(
        wpb.PollAttemptRequest(worker_id=worker_id, task_ids=[task_id], wait=seconds(10)), timeout=30
    )
    assert len(response.assignments) == 1, f"no attempt of {task_id} handed out within 10 s"
    return response.assignments[0]


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    """Runs call; asserts it fails with `code`, a message containing every word
    (case-insensitive) and no stack trace. Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for word in words:
        assert word.lower() in details.lower(), f"{word!r} not named in {details!r}"
    assert_clean(details)
    return details


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def cairn_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ---- 1. the Python client --------------------------------------------------------------


def test_python_client_trigger_wait_get_list_filter_and_page(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    with Client(address=cluster.address) as client:
        run = client.trigger("three-steps", {"x": 5})
        assert run.task == "three-steps"
        uuid.UUID(run.id)
        done = client.wait(run.id, timeout=20)
        assert done.id == run.id
        assert done.status == "completed", done
        assert done.output == {"sum": 15, "product": 30, "text": "sum=15 product=30"}
        assert done.error is None

        full = client.get(run.id)
        assert full.status == "completed"
        assert [s.name for s in full.steps] == ["add", "multiply", "describe"]
        assert [s.position for s in full.steps] == [0, 1, 2]
        assert [s.status for s in full.steps] == ["completed"] * 3
        assert [s.attempt for s in full.steps] == [1, 1, 1]
        assert [s.output for s in full.steps] == [15, 30, "sum=15 product=30"]
        assert len(full.attempts) == 1, full.attempts
        assert full.attempts[0].number == 1
        assert full.attempts[0].status == "completed"
        assert full.attempt_count == 1
        assert full.input == {"x": 5}

        # More runs: four of another task, to filter and page through.
        echo_ids = [client.trigger("echo", {"i": i}).id for i in range(4)]
        for rid in echo_ids:
            assert client.wait(rid, timeout=20).status == "completed"
        newest_first = list(reversed([run.id, *echo_ids]))

        listed = client.list()
        assert [r.id for r in listed] == newest_first
        assert all(r.status == "completed" for r in listed)
        assert [r.id for r in client.list(task="echo")] == list(reversed(echo_ids))
        assert [r.id for r in client.list(task="three-steps")] == [run.id]
        assert [r.id for r in client.list(status="completed")] == newest_first
        assert client.list(status="failed") == []
        assert client.list(status=["queued", "executing"]) == []
        assert [r.id for r in client.list(task="echo", status="completed")] == list(reversed(echo_ids))
        assert [r.id for r in client.list(limit=2)] == newest_first[:2]

    # Paging with the AsyncClient (limit smaller than the total) ...
    async def async_list() -> tuple[list[str], list[str]]:
        async with AsyncClient(address=cluster.address) as ac:
            return (
                [r.id for r in await ac.list(limit=50)],
                [r.id for r in await ac.list(task="echo", limit=3)],
            )

    all_ids, first_echo = asyncio.run(async_list())
    assert all_ids == newest_first
    assert first_echo == list(reversed(echo_ids))[:3]

    # ... and with raw ListRuns pages of 2: the tokens walk every run once.
    stub = run_stub(cluster)

    def walk(**filters: Any) -> tuple[list[str], int]:
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = stub.ListRuns(
                rpb.ListRunsRequest(page_size=2, page_token=token, **filters), timeout=RPC_TIMEOUT
            )
            pages += 1
            assert len(page.runs) <= 2
            for r in page.runs:
                assert not r.steps and not r.attempts, "lists carry no steps or attempts"
            seen.extend(r.id for r in page.runs)
            token = page.next_page_token
            if not token:
                return seen, pages
            assert pages < 20, "paging does not end"

    seen, pages = walk()
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    assert seen == newest_first
    assert pages == 3
    seen, pages = walk(task_id="echo")
    assert seen == list(reversed(echo_ids))
    assert pages == 2
    seen, _ = walk(statuses=[cpb.RUN_STATUS_COMPLETED])
    assert seen == newest_first


# ---- 2. grpcurl as the client ------------------------------------------------------


def test_grpcurl_client_trigger_wait_reflection_and_health(cluster: Cluster) -> None:
    address = cluster.address
    listing = grpcurl(address, "list")
    assert listing.returncode == 0, listing.stderr
    services = set(listing.stdout.split())
    assert {"cairn.v1.RunService", "cairn.v1.WorkerService", "grpc.health.v1.Health"} <= services, (
        listing.stdout
    )

    health = grpcurl_call(address, "grpc.health.v1.Health/Check", {"service": ""})
    assert health.get("status") == "SERVING", health

    start_basic_worker(cluster)
    triggered = grpcurl_call(
        address,
        "cairn.v1.RunService/TriggerRun",
        {"task_id": "three-steps", "payload": {"data": b64_json({"x": 7}), "encoding": JSON}},
    )
    run = triggered["run"]
    run_id = run["id"]
    uuid.UUID(run_id)
    assert json_field(run, "task_id") == "three-steps"
    assert not json_field(triggered, "existing", False)
    assert "input" not in run  # the caller sent it: not echoed back (issue 10)

    waited = grpcurl_call(address, "cairn.v1.RunService/WaitRun", {"run_id": run_id, "timeout": "20s"})
    assert waited.get("done") is True, waited
    run = waited["run"]
    assert run["id"] == run_id
    assert decode_b64_json(run["input"]["data"]) == {"x": 7}
    assert run["status"] == "RUN_STATUS_COMPLETED", run
    assert decode_b64_json(run["output"]["data"]) == {"sum": 17, "product": 34, "text": "sum=17 product=34"}
    assert json_field(run["output"], "encoding") == JSON
    attempts = run["attempts"]
    assert len(attempts) == 1
    assert attempts[0]["number"] == 1
    assert attempts[0]["status"] == "ATTEMPT_STATUS_COMPLETED"
    assert json_field(attempts[0], "worker_id")
    steps = run["steps"]
    assert [s["name"] for s in steps] == ["add", "multiply", "describe"]
    assert [s["status"] for s in steps] == ["STEP_STATUS_COMPLETED"] * 3
    assert [s.get("attempt") for s in steps] == [1, 1, 1]
    assert [decode_b64_json(s["output"]["data"]) for s in steps] == [17, 34, "sum=17 product=34"]

    got = grpcurl_call(address, "cairn.v1.RunService/GetRun", {"run_id": run_id})
    assert got["run"]["status"] == "RUN_STATUS_COMPLETED"


# ---- 3. a worker in no particular language --------------------------------------------


def test_language_neutral_protocol_with_grpcurl_as_the_worker(cluster: Cluster) -> None:
    address = cluster.address
    worker_id = "neutral-worker-1"
    registered = grpcurl_call(
        address,
        "cairn.v1.WorkerService/RegisterWorker",
        {
            "worker_id": worker_id,
            "version": "grpcurl-1",
            "slots": 1,
            "tasks": [{"task_id": "neutral", "retry": {"max_attempts": 1}}],
        },
    )
    assert registered == {}

    payload = {"hello": "from any language", "n": [1, 2, 3]}
    triggered = grpcurl_call(
        address,
        "cairn.v1.RunService/TriggerRun",
        {"task_id": "neutral", "payload": {"data": b64_json(payload), "encoding": JSON}},
    )
    run_id = triggered["run"]["id"]
    assert triggered["run"]["status"] == "RUN_STATUS_QUEUED"

    polled = grpcurl_call(
        address,
        "cairn.v1.WorkerService/PollAttempt",
        {"worker_id": worker_id, "task_ids": ["neutral"], "wait": "10s"},
    )
    assert len(polled.get("assignments", [])) == 1, f"not one assignment: {polled}"
    assignment = polled["assignments"][0]
    assert json_field(assignment, "run_id") == run_id
    assert assignment["attempt"] == 1
    assert json_field(assignment, "task_id") == "neutral"
    assert decode_b64_json(assignment["payload"]["data"]) == payload
    assert not assignment.get("steps"), "a first attempt has an empty journal"
    assert json_field(assignment, "lease_duration")

    step_output = {"step": "s1", "ok": True}
    recorded = grpcurl_call(
        address,
        "cairn.v1.WorkerService/RecordStep",
        {
            "run_id": run_id,
            "attempt": 1,
            "position": 0,
            "name": "s1",
            "status": "STEP_STATUS_COMPLETED",
            "tries": 1,
            "output": {"data": b64_json(step_output), "encoding": JSON},
        },
    )
    assert recorded["step"]["name"] == "s1"
    assert recorded["step"]["status"] == "STEP_STATUS_COMPLETED"
    assert decode_b64_json(recorded["step"]["output"]["data"]) == step_output

    beat = grpcurl_call(address, "cairn.v1.WorkerService/Heartbeat", {"run_id": run_id, "attempt": 1})
    assert json_field(beat, "lease_expires_at"), beat

    output = {"result": "done by grpcurl", "total": 6}
    finished = grpcurl_call(
        address,
        "cairn.v1.WorkerService/FinishAttempt",
        {
            "run_id": run_id,
            "attempt": 1,
            "outcome": "ATTEMPT_OUTCOME_COMPLETED",
            "output": {"data": b64_json(output), "encoding": JSON},
        },
    )
    assert json_field(finished, "run_status") == "RUN_STATUS_COMPLETED", finished

    run = grpcurl_call(address, "cairn.v1.RunService/GetRun", {"run_id": run_id})["run"]
    assert run["status"] == "RUN_STATUS_COMPLETED"
    assert decode_b64_json(run["output"]["data"]) == output
    assert len(run["steps"]) == 1
    step = run["steps"][0]
    assert step["name"] == "s1"
    assert step.get("position", 0) == 0
    assert step["status"] == "STEP_STATUS_COMPLETED"
    assert decode_b64_json(step["output"]["data"]) == step_output
    assert len(run["attempts"]) == 1
    attempt = run["attempts"][0]
    assert attempt["status"] == "ATTEMPT_STATUS_COMPLETED"
    assert json_field(attempt, "worker_id") == worker_id
    assert json_field(attempt, "worker_version") == "grpcurl-1"


# ---- 4. idempotency --------------------------------------------------------------------


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


# ---- 5. bad input ------------------------------------------------------------------------


@pytest.mark.cluster_options(lease_seconds=60)
def test_bad_input_is_refused_with_the_right_status_and_nothing_written(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    # Fixtures over the protocol: a completed run, a queued run, an executing run.
    register(wstub, "bad-input-worker", "done-task", "parked-task", "live-task")
    done = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="done-task", payload=json_payload({"a": 1})), timeout=RPC_TIMEOUT
    ).run
    a = poll(wstub, "bad-input-worker", "done-task")
    assert a.run_id == done.id
    wstub.FinishAttempt(
        wpb.FinishAttemptRequest(
            run_id=done.id, attempt=1, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED, output=json_payload("ok")
        ),
        timeout=RPC_TIMEOUT,
    )
    parked = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="parked-task", payload=json_payload(None)), timeout=RPC_TIMEOUT
    ).run
    live = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="live-task", payload=json_payload(None)), timeout=RPC_TIMEOUT
    ).run
    assert poll(wstub, "bad-input-worker", "live-task").run_id == live.id

    before = table_counts(cluster)
    assert before["runs"] == 3

    def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
        details = expect_rpc_error(call, code, *words)
        after = table_counts(cluster)
        assert after == before, f"rows written by a refused request ({details}): {before} -> {after}"
        return details

    t = RPC_TIMEOUT
    unknown_run = str(uuid.uuid4())
    # TriggerRun
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="no-such-task", payload=json_payload({})), timeout=t
        ),
        grpc.StatusCode.NOT_FOUND,
        "no-such-task",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="done-task", payload=cpb.Payload(data=b"{not json", encoding=JSON)),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payload",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="done-task", payload=cpb.Payload(data=b"\xff\xfe", encoding=JSON)),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payload",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(
                task_id="done-task", payload=cpb.Payload(data=b"<a/>", encoding="xml/tagged")
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "encoding",
        "xml/tagged",
    )
    refused(
        lambda: rstub.TriggerRun(rpb.TriggerRunRequest(task_id="", payload=json_payload({})), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "task_id",
    )
    # GetRun / CancelRun / WaitRun with run ids that are unknown or malformed
    refused(
        lambda: rstub.GetRun(rpb.GetRunRequest(run_id=unknown_run), timeout=t),
        grpc.StatusCode.NOT_FOUND,
        unknown_run,
    )
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=unknown_run), timeout=t),
        grpc.StatusCode.NOT_FOUND,
        unknown_run,
    )
    refused(
        lambda: rstub.GetRun(rpb.GetRunRequest(run_id="not-a-run-id"), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id",
    )
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id="not-a-run-id"), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id",
    )
    refused(lambda: rstub.GetRun(rpb.GetRunRequest(), timeout=t), grpc.StatusCode.INVALID_ARGUMENT, "run_id")
    refused(
        lambda: rstub.WaitRun(rpb.WaitRunRequest(run_id=done.id, timeout=seconds(3600)), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "timeout",
    )
    # CancelRun of a finished run
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=done.id), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        done.id,
    )
    # Worker writes from an attempt that is not the run's current one
    step = dict(position=0, name="s1", status=cpb.STEP_STATUS_COMPLETED, output=json_payload(1), tries=1)
    refused(
        lambda: wstub.RecordStep(wpb.RecordStepRequest(run_id=done.id, attempt=1, **step), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        done.id,
    )
    refused(
        lambda: wstub.RecordStep(wpb.RecordStepRequest(run_id=parked.id, attempt=1, **step), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        parked.id,
    )
    refused(
        lambda: wstub.RecordStep(wpb.RecordStepRequest(run_id=live.id, attempt=2, **step), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        live.id,
    )
    refused(
        lambda: wstub.FinishAttempt(
            wpb.FinishAttemptRequest(
                run_id=live.id, attempt=2, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED, output=json_payload(1)
            ),
            timeout=t,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        live.id,
    )
    refused(
        lambda: wstub.RecordStep(
            wpb.RecordStepRequest(
                run_id=live.id,
                attempt=1,
                position=0,
                name="s1",
                status=cpb.STEP_STATUS_COMPLETED,
                output=cpb.Payload(data=b"{oops", encoding=JSON),
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "output",
    )
    # RegisterWorker
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(worker_id="w-empty", version="1", slots=1), timeout=t
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tasks",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-factor",
                version="1",
                slots=1,
                tasks=[wpb.TaskDefinition(task_id="bad-retry", retry=cpb.RetryPolicy(factor=0.5))],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "factor",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-timeouts",
                version="1",
                slots=1,
                tasks=[
                    wpb.TaskDefinition(
                        task_id="bad-retry",
                        retry=cpb.RetryPolicy(min_timeout=seconds(10), max_timeout=seconds(1)),
                    )
                ],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_timeout",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-negative",
                version="1",
                slots=1,
                tasks=[wpb.TaskDefinition(task_id="bad-retry", retry=cpb.RetryPolicy(max_attempts=-1))],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_attempts",
    )
    # PollAttempt: the parked run stays queued.
    for bad in (-1, 101):
        refused(
            lambda: wstub.PollAttempt(
                wpb.PollAttemptRequest(
                    worker_id="bad-input-worker", task_ids=["parked-task"], max_attempts=bad, wait=seconds(0)
                ),
                timeout=t,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_attempts",
        )
    # ListRuns
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(page_size=5000), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(page_size=-1), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    for token in ("garbage", "bm90IGEgdG9rZW4=", "!!!"):
        refused(
            lambda: rstub.ListRuns(rpb.ListRunsRequest(page_token=token), timeout=t),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        )
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(statuses=[99]), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "statuses",
    )

    # The same refusals through the SDK's exceptions.
    with Client(address=cluster.address) as client:
        with pytest.raises(NotFoundError) as nf:
            client.trigger("no-such-task", {"x": 1})
        assert "no-such-task" in str(nf.value)
        assert_clean(str(nf.value))
        with pytest.raises(NotFoundError) as nf:
            client.get(unknown_run)
        assert unknown_run in str(nf.value)
        with pytest.raises(InvalidArgumentError) as ia:
            client.get("not-a-run-id")
        assert "run_id" in str(ia.value)
        assert_clean(str(ia.value))
        with pytest.raises(FailedPreconditionError) as fp:
            client.cancel(done.id)
        assert done.id in str(fp.value)
        assert_clean(str(fp.value))
    assert table_counts(cluster) == before

    # The runs the refusals named are as they were.
    assert rstub.GetRun(rpb.GetRunRequest(run_id=done.id), timeout=t).run.status == cpb.RUN_STATUS_COMPLETED
    assert rstub.GetRun(rpb.GetRunRequest(run_id=parked.id), timeout=t).run.status == cpb.RUN_STATUS_QUEUED
    assert rstub.GetRun(rpb.GetRunRequest(run_id=live.id), timeout=t).run.status == cpb.RUN_STATUS_EXECUTING


def test_one_poll_takes_up_to_max_attempts_runs_each_started(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    register(wstub, "batch-poller", "batched-task")
    ids = {
        rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="batched-task", payload=json_payload(i)), timeout=RPC_TIMEOUT
        ).run.id
        for i in range(5)
    }
    first = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=3, wait=seconds(5)
        ),
        timeout=30,
    ).assignments
    assert len(first) == 3, first
    rest = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=10, wait=seconds(5)
        ),
        timeout=30,
    ).assignments
    assert len(rest) == 2, rest
    handed = [a.run_id for a in [*first, *rest]]
    assert sorted(handed) == sorted(ids), "each run handed out exactly once"
    assert all(a.attempt == 1 and a.task_id == "batched-task" for a in [*first, *rest])
    statuses = {rstub.GetRun(rpb.GetRunRequest(run_id=i), timeout=RPC_TIMEOUT).run.status for i in ids}
    assert statuses == {cpb.RUN_STATUS_EXECUTING}
    assert cluster.sql_value("SELECT count(*) FROM queue_entries") == 0
    empty = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=10, wait=seconds(0.2)
        ),
        timeout=30,
    )
    assert not empty.assignments


# ---- 6. cancel -----------------------------------------------------------------------------


@pytest.mark.cluster_options(lease_seconds=10)
def test_cancel_a_queued_and_an_executing_run(cluster: Cluster, tmp_path: Path) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    # A queued run: its task is registered, but nobody polls for it.
    register(wstub, "idle-worker", "parked")
    with Client(address=cluster.address) as client:
        parked = client.trigger("parked", {"n": 1})
        assert parked.status == "queued"
        rid = uuid.UUID(parked.id)
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", rid) == 1
        canceled = client.cancel(parked.id, reason="no longer needed")
        assert canceled.status == "canceled"
        assert canceled.error is not None and "no longer needed" in canceled.error.message
        # At once: no waiting for a worker or a sweep.
        assert cluster.sql_value("SELECT status FROM runs WHERE id = $1", rid) == "canceled"
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", rid) == 0
        assert client.get(parked.id).status == "canceled"
        assert client.get(parked.id).attempts == []
        with pytest.raises(FailedPreconditionError):
            client.cancel(parked.id)

        # An executing run, waiting at its second step.
        start_basic_worker(cluster, slots=1)
        counter, release = tmp_path / "gated.txt", tmp_path / "release"
        run = client.trigger("gated", {"counter": str(counter), "release": str(release)})
        run_uuid = uuid.UUID(run.id)
        wait_for(
            lambda: cluster.sql_value("SELECT count(*) FROM steps WHERE run_id = $1", run_uuid) == 1,
            20,
            message="step 'first' never recorded",
        )
        assert read_lines(counter) == [f"first {run.id}"]
        assert client.get(run.id).status == "executing"

        canceled = client.cancel(run.id)
        assert canceled.status == "canceled"
        assert [a.status for a in canceled.attempts] == ["canceled"]
        release.touch()  # the gate opens: the worker records "gate", which is refused

        # The worker has a single slot: once it ran another run, it is done with
        # the canceled attempt.
        echo = client.trigger("echo", {"after": "cancel"})
        assert client.wait(echo.id, timeout=20).status == "completed"

        final = client.get(run.id)
        assert final.status == "canceled"
        assert [s.name for s in final.steps] == ["first"]
        assert [a.status for a in final.attempts] == ["canceled"]
        assert read_lines(counter) == [f"first {run.id}"], "step 'after' ran after the cancel"
        assert cluster.sql_value("SELECT count(*) FROM steps WHERE run_id = $1", run_uuid) == 1
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", run_uuid) == 0
        assert cluster.sql_value("SELECT count(*) FROM timers WHERE run_id = $1", run_uuid) == 0

        with pytest.raises(FailedPreconditionError) as fp:
            client.cancel(run.id)
        assert run.id in str(fp.value)
    expect_rpc_error(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=run.id), timeout=RPC_TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "canceled",
    )
    assert (
        run_stub(cluster).GetRun(rpb.GetRunRequest(run_id=run.id), timeout=RPC_TIMEOUT).run.status
        == cpb.RUN_STATUS_CANCELED
    )


# ---- 7. the command line -------------------------------------------------------------------


def test_cli_trigger_list_get_and_errors(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    address = ["--address", cluster.address]

    proc = cairn_cli("trigger", "three-steps", "--payload", '{"x": 1}', "--wait", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert {"id", "task", "status", "output", "error", "attempts", "steps"} <= set(run)
    assert run["task"] == "three-steps"
    assert run["status"] == "completed"
    assert run["output"] == {"sum": 11, "product": 22, "text": "sum=11 product=22"}
    assert run["error"] is None
    assert len(run["attempts"]) == 1 and run["attempts"][0]["status"] == "completed"
    assert [(s["name"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("add", "completed", 1),
        ("multiply", "completed", 1),
        ("describe", "completed", 1),
    ]

    proc = cairn_cli("trigger", "echo", "--payload", '{"hi": 1}', "--wait", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    echo = json.loads(proc.stdout)
    assert echo["status"] == "completed" and echo["output"] == {"hi": 1}

    proc = cairn_cli("runs", "list", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    listed = [json.loads(line) for line in lines]
    assert [r["id"] for r in listed] == [echo["id"], run["id"]]
    assert all(isinstance(r, dict) and r["status"] == "completed" for r in listed)
    proc = cairn_cli("runs", "list", "--json", "--task", "three-steps", *address)
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [run["id"]]

    proc = cairn_cli("runs", "get", run["id"], *address)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert run["id"] in text and "completed" in text
    for name in ("add", "multiply", "describe"):
        assert name in text, text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)

    runs_before = cluster.sql_value("SELECT count(*) FROM runs")
    proc = cairn_cli("trigger", "unknown-task", *address)
    assert proc.returncode != 0
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1, proc.stderr
    assert "unknown-task" in err_lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""

    proc = cairn_cli("trigger", "echo", "--payload", "{bad", *address)
    assert proc.returncode != 0
    assert "--payload" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert cluster.sql_value("SELECT count(*) FROM runs") == runs_before
