"""Durable waits with real processes (history, matching, frontend, workers,
PostgreSQL, NATS): a waiting run holds no concurrency slot and no worker slot;
a sleep survives SIGKILL of history and of the worker and still wakes on time;
events by name and key, with a timeout, and buffered for a run that is not
waiting yet; wait tokens completed once (client, grpcurl, CLI), unknown, timed
out; and validation of the wait API (right status, field named, nothing written).

The tasks are in tests/apps/wait_tasks.py; they write side effects, markers and
token ids to WAIT_TASKS_DIR, and hold on go-files the test creates.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness import (
    REPO_ROOT,
    Cluster,
    WorkerProcess,
    assert_clean,
    b64_json,
    grpcurl_call,
    grpcurl_error,
    json_field,
    json_payload,
    table_counts,
    wait_for,
    wait_registered,
)

from cairn import error_types, payloads
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import wait_service_pb2_grpc
from worker_sdk import Client, FailedPreconditionError, NotFoundError

APP = "tests.apps.wait_tasks"
TASKS = ("wait-serial", "wait-sleeper", "wait-event", "wait-token", "wait-quick")
JSON = "json/plain"
RUN_TIMEOUT = 20.0
RPC_TIMEOUT = 15.0


# ---- helpers -----------------------------------------------------------------------


@pytest.fixture
def wdir(tmp_path: Path) -> Path:
    """Where the tasks write side effects, markers and token ids, and find go-files."""
    d = tmp_path / "wait-tasks"
    d.mkdir()
    return d


def start_worker(cluster: Cluster, wdir: Path, slots: int = 4) -> WorkerProcess:
    """A worker of wait_tasks; returns once it registered (it polls right after)."""
    worker = cluster.start_worker(APP, slots=slots, env={"WAIT_TASKS_DIR": str(wdir)})
    wait_registered(cluster, worker=worker)
    return worker


def status(cluster: Cluster, run_id: str) -> str | None:
    return cluster.sql_value("SELECT status FROM runs WHERE id = $1::uuid", run_id)


def wait_status(cluster: Cluster, run_id: str, want: str, timeout: float = RUN_TIMEOUT) -> None:
    wait_for(
        lambda: status(cluster, run_id) == want,
        timeout,
        message=f"run {run_id} never {want} (status {status(cluster, run_id)})",
    )


def attempts(cluster: Cluster, run_id: str) -> list[Any]:
    return cluster.sql(
        "SELECT number, status, started_at, finished_at FROM attempts "
        "WHERE run_id = $1::uuid ORDER BY number",
        run_id,
    )


def finished(client: Client, run_id: str, output: Any) -> Any:
    """Waits for the run; asserts it completed with `output`; returns it."""
    run = client.wait(run_id, timeout=RUN_TIMEOUT)
    assert run.status == "completed", run
    assert run.output == output, run
    return run


def side_effects(wdir: Path, event: str, run_id: str) -> int:
    path = wdir / "events.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(1 for line in lines if line.split()[:2] == [event, run_id])


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    details = info.value.details() or ""
    got = info.value.code()
    assert got == code, f"expected {code.name}, got {got.name}: {details}"
    for word in words:
        assert word.lower() in details.lower(), f"{word!r} not named in {details!r}"
    assert_clean(details)


def assert_waiting_on_sleep(cluster: Cluster, client: Client, run_id: str) -> None:
    assert status(cluster, run_id) == "waiting"
    assert cluster.sql_value("SELECT kind FROM waits WHERE run_id = $1::uuid", run_id) == "sleep"
    assert client.get(run_id).wait.kind == "sleep"
    assert [(a["number"], a["status"]) for a in attempts(cluster, run_id)] == [(1, "suspended")]


# ---- 1. a waiting run holds no concurrency slot and no worker slot ---------------------


def test_waiting_run_frees_its_queue_slot_and_worker_slot(
    cluster: Cluster, client: Client, wdir: Path
) -> None:
    worker = start_worker(cluster, wdir)

    # Queue "serial" has concurrency limit 1: A sleeps 30 s, B runs to the end meanwhile.
    a = client.trigger("wait-serial", {"sleep": 30}).id
    wait_status(cluster, a, "waiting")
    b = client.trigger("wait-serial", {}).id
    finished(client, b, {"run": b, "attempt": 1})
    assert_waiting_on_sleep(cluster, client, a)
    assert attempts(cluster, b)[0]["started_at"] >= attempts(cluster, a)[0]["finished_at"]

    # Positive control: while C *executes* on "serial", B2 must stay queued, even
    # though the worker has free slots and hands out D (queued after B2) at once.
    c = client.trigger("wait-serial", {"hold": True}).id
    wait_for(lambda: (wdir / f"held-{c}").exists(), RUN_TIMEOUT, message="C never held")
    b2 = client.trigger("wait-serial", {}).id
    d = client.trigger("wait-quick", {"d": 1}).id
    finished(client, d, {"d": 1})
    assert status(cluster, b2) == "queued", "the queue's limit of 1 did not hold"
    assert attempts(cluster, b2) == []
    (wdir / f"go-{c}").touch()
    finished(client, b2, {"run": b2, "attempt": 1})
    finished(client, c, {"run": c, "attempt": 1})
    assert attempts(cluster, b2)[0]["started_at"] >= attempts(cluster, c)[0]["finished_at"]
    assert status(cluster, a) == "waiting"
    assert client.cancel(a).status == "canceled"
    worker.stop()

    # A worker with one slot, a task on an unlimited queue: the same.
    start_worker(cluster, wdir, slots=1)
    a = client.trigger("wait-sleeper", {"sleep": 30}).id
    wait_status(cluster, a, "waiting")
    b = client.trigger("wait-sleeper", {}).id
    finished(client, b, {"run": b, "attempt": 1})
    assert_waiting_on_sleep(cluster, client, a)
    assert attempts(cluster, b)[0]["started_at"] >= attempts(cluster, a)[0]["finished_at"]
    assert client.cancel(a).status == "canceled"


# ---- 2. a sleep survives SIGKILL of history and of the worker -----------------------


# Long enough for history and a worker to be SIGKILLed and started again (a few
# seconds on a loaded host) before the sleep falls due; the test checks they were.
SLEEP = 6


def test_sleep_survives_sigkill_of_history_and_worker_and_wakes_on_time(
    cluster: Cluster, client: Client, wdir: Path
) -> None:
    worker = start_worker(cluster, wdir)
    run_id = client.trigger("wait-sleeper", {"sleep": SLEEP}).id
    wait_status(cluster, run_id, "waiting")
    assert [(a["number"], a["status"]) for a in attempts(cluster, run_id)] == [(1, "suspended")]
    # A sleep is a wait at its position: nothing is recorded there until it fires.
    waiting = client.get(run_id).wait
    assert waiting is not None and waiting.kind == "sleep" and waiting.until is not None, waiting
    due = waiting.until
    assert (
        cluster.sql_value(
            "SELECT count(*) FROM steps WHERE run_id = $1::uuid AND name = 'wait.sleep'", run_id
        )
        == 0
    )

    worker.kill()
    cluster.kill("history")
    cluster.start("history")
    start_worker(cluster, wdir)
    # Both were back before the sleep fell due: it fires on time, not at a restart.
    back = datetime.now(UTC)
    assert back < due, f"history and the worker were back {back - due} after the due time"
    finished(client, run_id, {"run": run_id, "attempt": 2})

    run = cluster.sql("SELECT finished_at FROM runs WHERE id = $1::uuid", run_id)[0]
    rows = attempts(cluster, run_id)
    assert [(a["number"], a["status"]) for a in rows] == [(1, "suspended"), (2, "completed")]
    start_late = (rows[1]["started_at"] - due).total_seconds()
    late = (run["finished_at"] - due).total_seconds()
    print(
        f"\nsleep of {SLEEP} s: attempt 2 started {start_late:+.3f} s and the run finished "
        f"{late:+.3f} s after its due time (history and the worker were back "
        f"{(due - back).total_seconds():.1f} s before it)"
    )
    assert 0 <= start_late and late < 2.5
    # History recorded the sleep's step when it fired: its time, as an RFC 3339 string.
    row = cluster.sql(
        "SELECT position, output, output_encoding FROM steps WHERE run_id = $1::uuid AND name = 'wait.sleep'",
        run_id,
    )[0]
    assert row["position"] == waiting.position
    recorded = payloads.decode(bytes(row["output"]), row["output_encoding"])
    assert abs(datetime.fromisoformat(recorded.replace("Z", "+00:00")) - due) < timedelta(milliseconds=1)
    assert side_effects(wdir, "before", run_id) == 1, "a completed step ran again"
    assert side_effects(wdir, "after", run_id) == 1


# ---- 3. events ---------------------------------------------------------------------


def test_events_by_name_and_key_with_timeout_and_buffered_by_run_id(
    cluster: Cluster, client: Client, wdir: Path
) -> None:
    start_worker(cluster, wdir)
    send = "cairn.v1.WaitService/SendEvent"

    # By name and key, through grpcurl.
    r1 = client.trigger("wait-event", {"name": "approval", "key": "order-7"}).id
    wait_status(cluster, r1, "waiting")
    wait_info = client.get(r1).wait
    assert (wait_info.kind, wait_info.event_name, wait_info.event_key) == (
        "event",
        "approval",
        "order-7",
    )
    other_key = grpcurl_call(
        cluster.address,
        send,
        {"name": "approval", "key": "order-8", "payload": {"data": b64_json("no"), "encoding": JSON}},
    )
    assert not json_field(other_key, "delivered_run_ids"), other_key
    assert not other_key.get("buffered"), other_key
    approval = {"approved": True, "by": "ops"}
    sent = grpcurl_call(
        cluster.address,
        send,
        {"name": "approval", "key": "order-7", "payload": {"data": b64_json(approval), "encoding": JSON}},
    )
    assert json_field(sent, "delivered_run_ids") == [r1], sent
    finished(client, r1, approval)

    # An event that never comes: the wait's timeout raises WaitTimeoutError.
    r2 = client.trigger("wait-event", {"name": "never", "timeout": 2}).id
    run = finished(client, r2, "timed out")
    assert run.steps[-1].name == "wait.for_event"
    assert run.steps[-1].error.type == error_types.WAIT_TIMEOUT, run.steps
    rows = attempts(cluster, r2)
    assert (rows[-1]["started_at"] - rows[0]["started_at"]).total_seconds() >= 1.9, rows

    # Sent by run id while the run still executes (before its wait): kept, then delivered.
    r3 = client.trigger("wait-event", {"name": "approval", "hold": True}).id
    wait_for(lambda: (wdir / f"held-{r3}").exists(), RUN_TIMEOUT, message="r3 never held")
    early = {"early": 1}
    sent = grpcurl_call(
        cluster.address,
        send,
        {"run_id": r3, "name": "approval", "payload": {"data": b64_json(early), "encoding": JSON}},
    )
    assert sent.get("buffered") is True and not json_field(sent, "delivered_run_ids"), sent
    assert status(cluster, r3) == "executing"
    (wdir / f"go-{r3}").touch()
    finished(client, r3, early)
    assert cluster.sql_value("SELECT count(*) FROM run_inbox") == 0


# ---- 4. wait tokens ----------------------------------------------------------------


def token_of(cluster: Cluster, wdir: Path, run_id: str) -> str:
    """The token the run created, once the run waits on it."""
    wait_status(cluster, run_id, "waiting")
    token = (wdir / f"token-{run_id}").read_text()
    assert cluster.sql_value("SELECT token_id FROM waits WHERE run_id = $1::uuid", run_id) == token
    return token


def test_tokens_complete_once_unknown_expired_and_cli(cluster: Cluster, client: Client, wdir: Path) -> None:
    start_worker(cluster, wdir)
    complete = "cairn.v1.WaitService/CompleteWaitToken"
    payload = {"data": b64_json({"again": True}), "encoding": JSON}

    r1 = client.trigger("wait-token", {}).id
    token = token_of(cluster, wdir, r1)
    assert client.get(r1).wait.token_id == token
    done = client.complete_token(token, {"approved": 42})
    assert done.status == "completed" and done.payload == {"approved": 42}
    finished(client, r1, {"approved": 42})
    with pytest.raises(FailedPreconditionError):
        client.complete_token(token, {"again": True})
    grpcurl_error(cluster.address, complete, {"token_id": token, "payload": payload}, "FailedPrecondition")
    assert client.get_token(token).payload == {"approved": 42}

    with pytest.raises(NotFoundError):
        client.complete_token("tok_unknown", {})
    grpcurl_error(cluster.address, complete, {"token_id": "tok_unknown", "payload": payload}, "NotFound")

    # A token that times out after 1 s: the run's wait raises WaitTimeoutError.
    r2 = client.trigger("wait-token", {"timeout": 1}).id
    finished(client, r2, "expired")
    expired = (wdir / f"token-{r2}").read_text()
    assert client.get_token(expired).status == "timed_out"
    with pytest.raises(FailedPreconditionError):
        client.complete_token(expired, {"late": True})
    grpcurl_error(cluster.address, complete, {"token_id": expired, "payload": payload}, "FailedPrecondition")

    # The command line.
    r3 = client.trigger("wait-token", {}).id
    token3 = token_of(cluster, wdir, r3)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn_cli",
            "tokens",
            "complete",
            token3,
            "--payload",
            '{"via": "cli"}',
            "--address",
            cluster.address,
        ],
        capture_output=True,
        text=True,
        cwd=str(REPO_ROOT),
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "completed" in cli.stdout, cli.stdout
    finished(client, r3, {"via": "cli"})


# ---- 5. bad input ------------------------------------------------------------------


def test_wait_api_rejects_bad_input_and_writes_nothing(cluster: Cluster, client: Client, wdir: Path) -> None:
    start_worker(cluster, wdir)
    done = client.trigger("wait-quick", {"q": 1}).id
    finished(client, done, {"q": 1})
    token = client.create_token().id
    stub = wait_service_pb2_grpc.WaitServiceStub(cluster.channel())
    before = table_counts(cluster)

    def call(method: str, **fields: Any) -> Callable[[], Any]:
        request = getattr(wspb, f"{method}Request")(**fields)
        return lambda: getattr(stub, method)(request, timeout=RPC_TIMEOUT)

    expect_rpc_error(
        call("SendEvent", name="", payload=json_payload(1)), grpc.StatusCode.INVALID_ARGUMENT, "name"
    )
    unknown = str(uuid.uuid4())
    expect_rpc_error(
        call("SendEvent", run_id=unknown, name="approval", payload=json_payload(1)),
        grpc.StatusCode.NOT_FOUND,
        unknown,
    )
    expect_rpc_error(
        call("SendEvent", run_id=done, name="approval", payload=json_payload(1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        done,
    )
    expect_rpc_error(
        call("CompleteWaitToken", token_id=token, payload=cpb.Payload(data=b"{not json", encoding=JSON)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payload",
    )
    expect_rpc_error(
        call("CreateWaitToken", timeout=Duration(seconds=-5)), grpc.StatusCode.INVALID_ARGUMENT, "timeout"
    )

    assert table_counts(cluster) == before
    assert client.get_token(token).status == "pending"
