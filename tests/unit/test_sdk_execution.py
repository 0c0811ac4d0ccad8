"""Running one attempt (execute_attempt): outcomes, errors, heartbeat fencing and
write failures, against an in-memory stand-in for the WorkerService stub."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness.waiting import wait_for_async
from sdk_fakes import FakeStub

from cairn import payloads
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import NonRetryableError, Retry, StepFailedError, _calls, context, step, task, wait
from worker_sdk._batching import BatchingStub
from worker_sdk._execution import execute_attempt

TOKEN = "r3x6vT0cQm1kZ9PzH2wYbN4uLs8aEfGj"  # the assignment's attempt_token


class QuotaError(Exception):
    pass


def assignment(
    payload: Any = None, steps: list[common_pb2.Step] = (), lease: float = 30.0, task_id: str = "t"
) -> wpb.AttemptAssignment:
    lease_d = Duration()
    lease_d.FromNanoseconds(int(lease * 1e9))
    return wpb.AttemptAssignment(
        run_id="run-1",
        attempt=1,
        task_id=task_id,
        payload=common_pb2.Payload(data=payloads.encode_json(payload), encoding="json/plain"),
        steps=steps,
        lease_duration=lease_d,
        attempt_token=TOKEN,
    )


def execute(
    t: Any, a: wpb.AttemptAssignment, stub: FakeStub | None = None
) -> tuple[wpb.FinishAttemptRequest | None, FakeStub]:
    stub = stub or FakeStub()
    return asyncio.run(execute_attempt(stub, "default", t, a)), stub


def test_completed_attempt_reports_output_and_sees_context() -> None:
    seen = {}

    @task(id="t")
    async def t(payload: dict) -> dict:
        seen.update(run_id=context.run_id, attempt=context.attempt, task_id=context.task_id)
        context.logger.info("hello %s", payload["name"])
        return {"greeting": f"hi {payload['name']}"}

    finish, stub = execute(t, assignment({"name": "ada"}))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    assert payloads.decode(finish.output.data, finish.output.encoding) == {"greeting": "hi ada"}
    assert (finish.namespace, finish.run_id, finish.attempt) == ("default", "run-1", 1)
    assert stub.methods() == ["AppendRunOutput", "FinishAttempt"]  # the logged line, then the end
    assert seen == {"run_id": "run-1", "attempt": 1, "task_id": "t"}


def test_exception_reports_type_message_and_trace() -> None:
    @task(id="t")
    async def t(payload: Any) -> None:
        raise QuotaError("over quota")

    finish, _ = execute(t, assignment())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert finish.error.type == f"{__name__}.QuotaError"
    assert finish.error.message == "over quota"
    assert "Traceback" in finish.error.stack_trace and "over quota" in finish.error.stack_trace
    assert not finish.error.non_retryable


@pytest.mark.parametrize(
    "exc, expected", [(NonRetryableError("stop"), True), (KeyError("k"), True), (ValueError("v"), False)]
)
def test_non_retryable_task_errors(exc: Exception, expected: bool) -> None:
    @task(id="t", retry=Retry(non_retryable=(KeyError,)))
    async def t(payload: Any) -> None:
        raise exc

    finish, _ = execute(t, assignment())
    assert finish.error.non_retryable is expected


def test_step_failure_is_reported_as_the_original_error() -> None:
    @step(name="charge")
    async def charge() -> None:
        raise QuotaError("no credit")

    @task(id="t")
    async def t(payload: Any) -> None:
        await charge()

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    assert finish.error.type == f"{__name__}.QuotaError"
    assert finish.error.message == "no credit"
    assert not finish.error.non_retryable


def test_replayed_step_failure_matches_task_non_retryable_by_type_name() -> None:
    @step(name="charge")
    async def charge() -> None: ...

    @task(id="t", retry=Retry(non_retryable=(QuotaError,)))
    async def t(payload: Any) -> None:
        await charge()

    recorded = common_pb2.Step(
        position=0,
        name="charge",
        status=common_pb2.STEP_STATUS_FAILED,
        error=common_pb2.ErrorInfo(
            type=f"{__name__}.QuotaError", message="no credit", stack_trace="recorded trace"
        ),
    )
    finish, stub = execute(t, assignment(steps=[recorded]))
    assert stub.methods() == ["FinishAttempt"]
    assert finish.error.type == f"{__name__}.QuotaError" and finish.error.non_retryable
    assert "recorded trace" in finish.error.stack_trace


def test_non_determinism_fails_the_run_even_if_caught() -> None:
    @step(name="new-step")
    async def new_step() -> None: ...

    @task(id="t")
    async def t(payload: Any) -> str:
        try:
            await new_step()
        except Exception:
            pass
        return "done"

    recorded = common_pb2.Step(position=0, name="old-step", status=common_pb2.STEP_STATUS_COMPLETED)
    finish, _ = execute(t, assignment(steps=[recorded]))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert finish.error.type == "worker_sdk.errors.NonDeterminismError"
    assert finish.error.non_retryable
    assert "'old-step'" in finish.error.message and "'new-step'" in finish.error.message


def test_non_serialisable_return_fails_non_retryable_naming_the_task() -> None:
    @task(id="bad-output")
    async def t(payload: Any) -> object:
        return {1, 2}

    finish, _ = execute(t, assignment(task_id="bad-output"))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED and finish.error.non_retryable
    assert "task 'bad-output'" in finish.error.message


def test_refused_heartbeat_cancels_the_task_and_reports_nothing() -> None:
    cancelled = []

    @task(id="t")
    async def t(payload: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    stub = FakeStub(refuse={"Heartbeat": grpc.StatusCode.FAILED_PRECONDITION})
    finish, _ = execute(t, assignment(lease=0.3), stub)
    assert finish is None
    assert cancelled == [True]
    assert stub.methods() == ["Heartbeat"]


def test_transient_heartbeat_failure_keeps_going() -> None:
    stub = FakeStub(refuse={"Heartbeat": grpc.StatusCode.UNAVAILABLE})

    @task(id="t")
    async def t(payload: Any) -> int:
        async def two_heartbeats() -> bool:
            return stub.methods().count("Heartbeat") >= 2

        await wait_for_async(two_heartbeats, 10, message="a second heartbeat after a refused one")
        return 1

    finish, _ = execute(t, assignment(lease=0.3), stub)
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    assert stub.methods().count("Heartbeat") >= 2


def test_refused_finish_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        return 1

    stub = FakeStub(refuse={"FinishAttempt": grpc.StatusCode.FAILED_PRECONDITION})
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert "superseded" in caplog.text


def test_unreachable_server_during_record_abandons_after_the_lease(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    @step(name="s")
    async def s() -> int:
        return 1

    @task(id="t")
    async def t(payload: Any) -> int:
        return await s()

    # The give-up is the longer of the lease and UNREACHABLE_GIVE_UP_SECONDS (60 s,
    # which this test used to wait out in full): 1 s here, still longer than the lease.
    monkeypatch.setattr(_calls, "UNREACHABLE_GIVE_UP_SECONDS", 1.0)
    stub = FakeStub(refuse={"RecordStep": grpc.StatusCode.UNAVAILABLE})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        finish, _ = execute(t, assignment(lease=0.3), stub)
    assert time.monotonic() - started >= 0.3  # not before the lease
    assert finish is None
    assert "FinishAttempt" not in stub.methods()
    assert stub.methods().count("RecordStep") >= 2
    assert "the server was unreachable for 1 s" in caplog.text, caplog.text


def test_unknown_task_fails_the_attempt() -> None:
    finish, _ = execute(None, assignment(task_id="nope"))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert "'nope'" in finish.error.message


def test_refused_record_stops_the_attempt_without_finishing(caplog: pytest.LogCaptureFixture) -> None:
    import gc

    @step(name="s")
    async def s() -> int:
        return 1

    @task(id="t")
    async def t(payload: Any) -> int:
        try:
            return await s()
        except Exception:
            return -1  # cannot swallow the abandonment

    stub = FakeStub(refuse={"RecordStep": grpc.StatusCode.FAILED_PRECONDITION})
    with caplog.at_level(logging.WARNING):
        finish, _ = execute(t, assignment(), stub)
        gc.collect()
    assert finish is None
    assert stub.methods() == ["RecordStep"]
    assert "superseded" in caplog.text
    assert "never retrieved" not in caplog.text


# ---- why an attempt is gone (the refusal's "cairn-attempt-gone" trailing metadata) ----------


@pytest.mark.parametrize(
    ("gone", "reason"),
    [
        ("canceled", "run run-1 was canceled"),
        ("timed_out", "run run-1 timed out"),
        ("superseded", "attempt 1 was superseded"),
        ("ended", "attempt 1 has already ended"),
        ("moved_to_mars", "attempt 1 is no longer current (moved_to_mars)"),
    ],
)
def test_refused_heartbeat_logs_why_the_attempt_is_gone(
    gone: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    @task(id="t")
    async def t(payload: Any) -> None:
        await asyncio.sleep(10)

    stub = FakeStub(refuse={"Heartbeat": grpc.StatusCode.FAILED_PRECONDITION})
    stub.refuse_gone = gone
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish, _ = execute(t, assignment(lease=0.3), stub)
    assert finish is None
    assert f"attempt superseded: run=run-1 attempt=1 task=t; heartbeat refused: {reason}" in caplog.text
    assert "Heartbeat refused" not in caplog.text  # the reason, not the server's message


def test_refused_record_logs_why_from_the_metadata_not_the_message(caplog: pytest.LogCaptureFixture) -> None:
    @step(name="s")
    async def s() -> int:
        return 1

    @task(id="t")
    async def t(payload: Any) -> int:
        return await s()

    stub = FakeStub()
    stub.refuse_writes[("run-1", 0)] = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "some wording that may change",
        "canceled",
    )
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert stub.methods() == ["RecordStep"]
    assert "recording step 's' at position 0 failed: run run-1 was canceled" in caplog.text
    assert "attempt superseded: run=run-1 attempt=1 task=t (" in caplog.text
    assert "its result is discarded" in caplog.text


def test_refused_finish_logs_why_from_the_metadata(caplog: pytest.LogCaptureFixture) -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        return 1

    stub = FakeStub()
    stub.refuse_writes[("run-1", None)] = (grpc.StatusCode.FAILED_PRECONDITION, "stale", "superseded")
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert "the server refused its finish: attempt 1 was superseded" in caplog.text


def test_refused_suspension_logs_why_and_abandons(caplog: pytest.LogCaptureFixture) -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await wait.for_event("approval")

    stub = FakeStub()
    stub.refuse_writes[("run-1", None)] = (grpc.StatusCode.FAILED_PRECONDITION, "stale", "timed_out")
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert stub.methods() == ["FinishAttempt"]
    assert "run run-1 timed out" in caplog.text


def test_a_refusal_naming_a_gone_attempt_abandons_whatever_its_code() -> None:
    # The metadata decides, even with a code the SDK would otherwise raise into the task.
    @step(name="s")
    async def s() -> int:
        return 1

    @task(id="t")
    async def t(payload: Any) -> int:
        try:
            return await s()
        except Exception:
            return -1

    stub = FakeStub()
    stub.refuse_writes[("run-1", 0)] = (grpc.StatusCode.ABORTED, "gone", "ended")
    finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert stub.methods() == ["RecordStep"]


def test_every_write_of_the_attempt_carries_the_assignments_token() -> None:
    """Heartbeats, step records (completed and failed), metadata, log lines and
    chunks, and each way the attempt ends, sent alone or batched."""

    @step(name="fetch")
    async def fetch() -> int:
        return 1

    @step(name="broken")
    async def broken() -> None:
        raise ValueError("no")

    @task(id="t")
    async def t(payload: Any) -> Any:
        context.logger.info("starting")
        await fetch()
        try:
            await broken()
        except StepFailedError:
            pass
        await context.update_metadata(progress=1)
        await context.stream("tokens", "hi")
        await wait_for_async(heartbeat_sent, 10, message="a heartbeat (every third of the lease)")
        if payload == "wait":
            return await wait.for_event("go")
        if payload == "fail":
            raise ValueError("failed")
        return "done"

    async def heartbeat_sent() -> bool:
        return any(isinstance(w, wpb.HeartbeatRequest) for w in writes(stub))

    def writes(stub: FakeStub) -> list[Any]:
        found = []
        for call in stub.calls:
            if call.method == "BatchWrite":
                found += [getattr(w, w.WhichOneof("write") or "") for w in call.request.writes]
            else:
                found.append(call.request)
        return found

    for payload, batched in (("wait", False), ("fail", False), ("done", False), ("done", True)):
        stub = FakeStub()
        sent = BatchingStub(stub) if batched else stub
        finish = asyncio.run(execute_attempt(sent, "default", t, assignment(payload, lease=0.3)))
        assert finish is not None and finish.attempt_token == TOKEN
        kinds = {type(r).__name__ for r in writes(stub)}
        assert {"HeartbeatRequest", "RecordStepRequest", "UpdateRunMetadataRequest"} <= kinds, kinds
        assert {"AppendRunOutputRequest", "FinishAttemptRequest"} <= kinds, kinds
        assert [r for r in writes(stub) if r.attempt_token != TOKEN] == []
