"""Durable waits, child runs and run metadata inside an attempt (execute_attempt
against an in-memory stand-in for the WorkerService, RunService and WaitService
stubs): what is recorded, how the attempt suspends, and what replay returns."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from sdk_fakes import FakeStub

from cairn import payloads
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import (
    ChildResult,
    ChildRunFailedError,
    ErrorInfo,
    InvalidArgumentError,
    RunHandle,
    WaitTimeoutError,
    WaitToken,
    context,
    step,
    task,
    wait,
)
from worker_sdk._attempt import AttemptSuspended
from worker_sdk._execution import execute_attempt


def assignment(
    steps: list[common_pb2.Step] = (),
    payload: Any = None,
    lease: float = 30.0,
    metadata: dict[str, Any] | None = None,
    parent: str = "",
) -> wpb.AttemptAssignment:
    lease_d = Duration()
    lease_d.FromNanoseconds(int(lease * 1e9))
    a = wpb.AttemptAssignment(
        run_id="run-1",
        attempt=2,
        task_id="t",
        payload=common_pb2.Payload(data=payloads.encode_json(payload), encoding="json/plain"),
        steps=steps,
        lease_duration=lease_d,
        parent_run_id=parent,
    )
    if metadata is not None:
        s = Struct()
        s.update(metadata)
        a.metadata.CopyFrom(s)
    return a


def execute(
    t: Any, a: wpb.AttemptAssignment, stub: FakeStub | None = None
) -> tuple[wpb.FinishAttemptRequest | None, FakeStub]:
    stub = stub or FakeStub()
    return asyncio.run(execute_attempt(stub, "default", t, a)), stub


def completed(position: int, name: str, value: Any) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=payloads.encode_json(value), encoding="json/plain"),
    )


def failed(position: int, name: str, error_type: str, message: str) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_FAILED,
        error=common_pb2.ErrorInfo(type=error_type, message=message),
    )


def iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def output_of(finish: wpb.FinishAttemptRequest) -> Any:
    return payloads.decode(finish.output.data, finish.output.encoding)


@step(name="before")
async def before() -> str:
    return "before"


@step(name="after")
async def after() -> str:
    return "after"


# ---- sleeping ----------------------------------------------------------------------------


def test_sleep_records_until_first_then_suspends_and_sends_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reached = []

    @task(id="t")
    async def t(payload: Any) -> str:
        await before()
        await wait.for_(timedelta(hours=1))
        reached.append("after the sleep")
        return await after()

    started = datetime.now(UTC)
    with caplog.at_level(logging.INFO, logger="cairn.worker"):
        finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "RecordStep", "FinishAttempt"]
    record = stub.requests("RecordStep")[1]
    assert (record.position, record.name, record.status) == (
        1,
        "wait.sleep",
        common_pb2.STEP_STATUS_COMPLETED,
    )
    until = datetime.fromisoformat(
        payloads.decode(record.output.data, "json/plain")["until"].replace("Z", "+00:00")
    )
    assert timedelta(minutes=59) < until - started < timedelta(minutes=61)
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert not finish.HasField("wait")
    assert finish.wake_at.ToDatetime(tzinfo=UTC) == until
    assert (finish.run_id, finish.attempt) == ("run-1", 2)
    assert reached == []
    assert "attempt suspended: run=run-1 attempt=2" in caplog.text
    assert "sleep until" in caplog.text


def test_recorded_sleep_in_the_past_returns_at_once() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        await wait.for_(3600)
        return await after()

    past = datetime.now(UTC) - timedelta(seconds=5)
    finish, stub = execute(t, assignment([completed(0, "wait.sleep", {"until": iso(past)})]))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED and output_of(finish) == "after"
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    assert stub.requests("RecordStep")[0].name == "after"


def test_recorded_sleep_in_the_future_suspends_until_the_recorded_time() -> None:
    @task(id="t")
    async def t(payload: Any) -> None:
        await wait.for_(timedelta(days=7))  # the recorded time wins, not a new clock

    later = datetime.now(UTC) + timedelta(minutes=10)
    finish, stub = execute(t, assignment([completed(0, "wait.sleep", {"until": iso(later)})]))
    assert stub.methods() == ["FinishAttempt"]
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert abs(finish.wake_at.ToDatetime(tzinfo=UTC) - later) < timedelta(milliseconds=1)


def test_short_sleeps_run_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_INLINE_WAIT_SECONDS", "0.5")

    @task(id="t")
    async def t(payload: Any) -> str:
        await wait.for_(0.2)
        await wait.until(datetime.now(UTC) + timedelta(seconds=0.1))
        return await after()

    t0 = time.monotonic()
    finish, stub = execute(t, assignment())
    assert time.monotonic() - t0 >= 0.29
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED and output_of(finish) == "after"
    assert [r.name for r in stub.requests("RecordStep")] == ["wait.sleep", "wait.sleep", "after"]


def test_recorded_short_remainder_sleeps_in_place() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        await wait.for_(timedelta(hours=1))
        return "woke"

    soon = datetime.now(UTC) + timedelta(seconds=0.2)
    finish, stub = execute(t, assignment([completed(0, "wait.sleep", {"until": iso(soon)})]))
    assert output_of(finish) == "woke" and stub.methods() == ["FinishAttempt"]


def test_sleep_argument_checks() -> None:
    @task(id="t")
    async def t(payload: Any) -> None:
        await payload_check()

    async def payload_check() -> None:
        with pytest.raises(ValueError, match="at least 0"):
            wait.for_(-1)
        with pytest.raises(TypeError, match="timedelta or a number"):
            wait.for_("10s")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timezone-aware"):
            wait.until(datetime(2030, 1, 1))

    finish, stub = execute(t, assignment())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED, finish.error.message
    assert stub.methods() == ["FinishAttempt"]


def test_waits_outside_a_task_or_inside_a_step_raise() -> None:
    with pytest.raises(RuntimeError, match="only available while a task runs"):
        wait.for_(1)

    @step(name="inner")
    async def inner() -> None:
        await wait.for_event("x")

    @task(id="t")
    async def t(payload: Any) -> None:
        await inner()

    finish, _ = execute(t, assignment())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert "inside a @step body" in finish.error.message


# ---- events and tokens -------------------------------------------------------------------


def test_for_event_suspends_with_the_wait_spec() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        await before()
        return await wait.for_event("approval", key="order-7", timeout=timedelta(days=1))

    started = datetime.now(UTC)
    finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    spec = finish.wait
    assert (spec.position, spec.name, spec.WhichOneof("kind")) == (1, "wait.for_event", "event")
    assert (spec.event.name, spec.event.key) == ("approval", "order-7")
    timeout_at = spec.timeout_at.ToDatetime(tzinfo=UTC)
    assert timedelta(hours=23) < timeout_at - started < timedelta(hours=25)
    assert not finish.HasField("wake_at")


def test_for_event_without_key_or_timeout() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await wait.for_event("ping")

    finish, _ = execute(t, assignment())
    assert finish.wait.event.name == "ping" and finish.wait.event.key == ""
    assert not finish.wait.HasField("timeout_at")


def test_recorded_event_returns_its_payload() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        approved = await wait.for_event("approval")
        return {"approved": approved}

    finish, stub = execute(t, assignment([completed(0, "wait.for_event", {"ok": True})]))
    assert output_of(finish) == {"approved": {"ok": True}}
    assert stub.methods() == ["FinishAttempt"]


def test_recorded_timeout_raises_a_catchable_wait_timeout() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            await wait.for_event("approval", timeout=60)
        except WaitTimeoutError as exc:
            return f"timed out: {exc}"
        return "approved"

    finish, _ = execute(
        t, assignment([failed(0, "wait.for_event", "cairn.WaitTimeout", "no event 'approval' within 60s")])
    )
    assert output_of(finish) == "timed out: no event 'approval' within 60s"


def test_uncaught_wait_timeout_fails_the_attempt() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await wait.for_token("tok-9")

    finish, _ = execute(
        t, assignment([failed(0, "wait.for_token", "cairn.WaitTimeout", "token tok-9 timed out")])
    )
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert finish.error.type == "worker_sdk.errors.WaitTimeoutError"
    assert finish.error.message == "token tok-9 timed out"


def test_a_wait_at_a_position_recorded_for_another_name_is_non_determinism() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            return await wait.for_event("approval")
        except Exception:
            return "swallowed"

    finish, _ = execute(t, assignment([completed(0, "before", "before")]))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED and finish.error.non_retryable
    assert "'before'" in finish.error.message and "'wait.for_event'" in finish.error.message


def test_create_token_is_a_step_and_for_token_suspends() -> None:
    seen = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        token = await wait.create_token(timeout=timedelta(hours=2))
        seen["token"] = token
        return await wait.for_token(token, timeout=30)

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["CreateWaitToken", "RecordStep", "FinishAttempt"]
    create = stub.requests("CreateWaitToken")[0]
    assert (create.namespace, create.run_id, create.idempotency_key) == ("default", "run-1", "run-1:0")
    assert create.timeout.ToTimedelta() == timedelta(hours=2)
    record = stub.requests("RecordStep")[0]
    assert (record.position, record.name) == (0, "wait.create_token")
    assert payloads.decode(record.output.data, "json/plain") == {
        "id": "tok-1",
        "timeout_at": "2030-01-01T00:00:00Z",
    }
    token = seen["token"]
    assert isinstance(token, WaitToken) and str(token) == "tok-1"
    assert token.timeout_at == datetime(2030, 1, 1, tzinfo=UTC)
    spec = finish.wait
    assert (spec.position, spec.name, spec.token.token_id) == (1, "wait.for_token", "tok-1")
    assert spec.HasField("timeout_at")


def test_replayed_token_is_not_created_again_and_its_payload_returns() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        token = await wait.create_token()
        return {"token": token.id, "got": await wait.for_token(token.id)}

    finish, stub = execute(
        t,
        assignment(
            [
                completed(0, "wait.create_token", {"id": "tok-5", "timeout_at": None}),
                completed(1, "wait.for_token", [1, 2, 3]),
            ]
        ),
    )
    assert output_of(finish) == {"token": "tok-5", "got": [1, 2, 3]}
    assert stub.methods() == ["FinishAttempt"]


# ---- suspension mechanics ----------------------------------------------------------------


def test_attempt_suspended_cannot_be_caught_by_except_exception() -> None:
    assert issubclass(AttemptSuspended, BaseException)
    assert not issubclass(AttemptSuspended, Exception)
    after_wait = []

    @task(id="t")
    async def t(payload: Any) -> str:
        try:
            await wait.for_event("approval")
        except Exception:
            after_wait.append("caught")
        return "went on"

    finish, stub = execute(t, assignment())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert after_wait == []
    assert stub.methods() == ["FinishAttempt"]


def test_refused_suspension_raises_into_the_task_which_goes_on() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        try:
            await wait.for_event("approval")
        except InvalidArgumentError as exc:
            return f"refused: {exc}"
        return "suspended?"

    stub = FakeStub(refuse={"FinishAttempt": grpc.StatusCode.INVALID_ARGUMENT}, refuse_times=1)
    finish, _ = execute(t, assignment(), stub)
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    assert output_of(finish) == "refused: FinishAttempt refused"
    assert [r.outcome for r in stub.requests("FinishAttempt")] == [
        wpb.ATTEMPT_OUTCOME_SUSPENDED,
        wpb.ATTEMPT_OUTCOME_COMPLETED,
    ]


def test_stale_suspension_abandons_the_attempt() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        try:
            await wait.for_event("approval")
        except Exception:
            return "swallowed"
        return "x"

    stub = FakeStub(refuse={"FinishAttempt": grpc.StatusCode.FAILED_PRECONDITION})
    finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert stub.methods() == ["FinishAttempt"]


def test_suspension_is_retried_while_the_server_is_unavailable() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await wait.for_event("approval")

    stub = FakeStub(refuse={"FinishAttempt": grpc.StatusCode.UNAVAILABLE}, refuse_times=2)
    finish, _ = execute(t, assignment(), stub)
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert stub.methods() == ["FinishAttempt"] * 3


def test_two_waits_at_once_fail_with_a_runtime_error() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(wait.for_event("a"), wait.for_event("b"))

    finish, stub = execute(t, assignment())
    assert "FinishAttempt" in stub.methods()
    assert [r.outcome for r in stub.requests("FinishAttempt")] == [wpb.ATTEMPT_OUTCOME_FAILED]
    assert finish.error.type == "worker_sdk.errors.ConcurrentWaitError"
    assert finish.error.non_retryable
    assert "batch_trigger_and_wait" in finish.error.message


def test_code_left_running_after_a_suspension_writes_nothing() -> None:
    finished: list[str] = []

    @step(name="slow")
    async def slow() -> str:
        await asyncio.sleep(0.2)
        finished.append("slow")
        return "slow"

    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(slow(), wait.for_event("a"))

    async def main() -> tuple[Any, FakeStub]:
        stub = FakeStub()
        finish = await execute_attempt(stub, "default", t, assignment())
        for _ in range(100):  # the step's body finishes meanwhile (within 5 s)
            if finished:
                break
            await asyncio.sleep(0.05)
        assert finished == ["slow"], "the step's body never finished"
        await asyncio.sleep(0)  # let its record attempt, if any, reach the stub
        return finish, stub

    finish, stub = asyncio.run(main())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert stub.methods() == ["FinishAttempt"]


# ---- child runs --------------------------------------------------------------------------


@task(id="child")
async def child_task(payload: Any) -> Any:
    return payload


def test_trigger_is_a_step_linking_the_child_to_its_parent() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        handle = await child_task.trigger({"n": 1}, priority=5, tags=["a"], delay=30)
        return {"id": handle.id, "task": handle.task_id, "handle": isinstance(handle, RunHandle)}

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["TriggerRun", "RecordStep", "FinishAttempt"]
    trigger = stub.requests("TriggerRun")[0]
    assert (trigger.task_id, trigger.parent_run_id, trigger.idempotency_key) == ("child", "run-1", "run-1:0")
    assert payloads.decode(trigger.payload.data, "json/plain") == {"n": 1}
    assert trigger.options.priority == 5 and list(trigger.options.tags) == ["a"]
    assert trigger.options.delay.ToTimedelta() == timedelta(seconds=30)
    record = stub.requests("RecordStep")[0]
    assert record.name == "trigger:child"
    assert payloads.decode(record.output.data, "json/plain") == {"run_id": "child-1"}
    assert output_of(finish) == {"id": "child-1", "task": "child", "handle": True}


def test_replayed_trigger_does_not_trigger_again() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return (await child_task.trigger(None)).id

    finish, stub = execute(t, assignment([completed(0, "trigger:child", {"run_id": "c-9"})]))
    assert output_of(finish) == "c-9" and stub.methods() == ["FinishAttempt"]


def test_refused_trigger_is_recorded_as_a_non_retryable_step_failure() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        await child_task.trigger(None)

    stub = FakeStub(refuse={"TriggerRun": grpc.StatusCode.NOT_FOUND})
    finish, _ = execute(t, assignment(), stub)
    assert stub.methods() == ["TriggerRun", "RecordStep", "FinishAttempt"]
    assert stub.requests("RecordStep")[0].status == common_pb2.STEP_STATUS_FAILED
    assert finish.error.type == "worker_sdk.errors.NotFoundError" and finish.error.non_retryable


def test_trigger_and_wait_suspends_with_one_child() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        await before()
        return await child_task.trigger_and_wait({"x": 1}, tags=["t1"], max_duration=timedelta(minutes=5))

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    spec = finish.wait
    assert (spec.position, spec.name, spec.WhichOneof("kind")) == (1, "trigger_and_wait:child", "children")
    [child] = spec.children.runs
    assert child.task_id == "child"
    assert payloads.decode(child.payload.data, "json/plain") == {"x": 1}
    assert list(child.options.tags) == ["t1"]
    assert child.options.max_duration.ToTimedelta() == timedelta(minutes=5)


def test_trigger_and_wait_returns_the_child_output() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return {"child said": await child_task.trigger_and_wait(1)}

    result = [{"run_id": "c1", "status": "completed", "output": {"ok": 1}, "error": None}]
    finish, _ = execute(t, assignment([completed(0, "trigger_and_wait:child", result)]))
    assert output_of(finish) == {"child said": {"ok": 1}}


def test_trigger_and_wait_raises_when_the_child_failed() -> None:
    caught = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            await child_task.trigger_and_wait(1)
        except ChildRunFailedError as exc:
            caught.update(
                run_id=exc.run_id,
                task=exc.task_id,
                status=exc.status,
                type=exc.error_type,
                message=exc.message,
                text=str(exc),
            )
        return "handled"

    result = [
        {
            "run_id": "c1",
            "status": "failed",
            "output": None,
            "error": {"type": "ValueError", "message": "bad input"},
        }
    ]
    finish, _ = execute(t, assignment([completed(0, "trigger_and_wait:child", result)]))
    assert output_of(finish) == "handled"
    assert caught == {
        "run_id": "c1",
        "task": "child",
        "status": "failed",
        "type": "ValueError",
        "message": "bad input",
        "text": "child run c1 of task 'child' ended failed: ValueError: bad input",
    }


def test_batch_trigger_and_wait_suspends_with_all_children_in_order() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait([{"i": 0}, {"i": 1}, {"i": 2}], priority=3)

    finish, _ = execute(t, assignment())
    spec = finish.wait
    assert spec.name == "batch_trigger_and_wait:child"
    assert [payloads.decode(c.payload.data, "json/plain") for c in spec.children.runs] == [
        {"i": 0},
        {"i": 1},
        {"i": 2},
    ]
    assert all(c.options.priority == 3 and c.task_id == "child" for c in spec.children.runs)


def test_batch_results_come_back_in_order() -> None:
    got = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        results = await child_task.batch_trigger_and_wait(["a", "b", "c"])
        got["results"] = results
        with pytest.raises(ChildRunFailedError, match="ended canceled"):
            results[1].unwrap()
        return [r.unwrap() for r in results if r.ok]

    recorded = [
        {"run_id": "c1", "status": "completed", "output": "A", "error": None},
        {
            "run_id": "c2",
            "status": "canceled",
            "output": None,
            "error": {"type": "cairn.Canceled", "message": "by parent"},
        },
        {"run_id": "c3", "status": "completed", "output": "C", "error": None},
    ]
    finish, _ = execute(t, assignment([completed(0, "batch_trigger_and_wait:child", recorded)]))
    assert output_of(finish) == ["A", "C"]
    results = got["results"]
    assert [r.run_id for r in results] == ["c1", "c2", "c3"]
    assert all(isinstance(r, ChildResult) for r in results)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == ErrorInfo(type="cairn.Canceled", message="by parent")


def test_batch_result_of_another_size_is_non_determinism() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait(["a", "b"])

    recorded = [{"run_id": "c1", "status": "completed", "output": "A", "error": None}]
    finish, _ = execute(t, assignment([completed(0, "batch_trigger_and_wait:child", recorded)]))
    assert finish.error.type == "worker_sdk.errors.NonDeterminismError"


def test_empty_batch_returns_without_suspending() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait([])

    finish, stub = execute(t, assignment())
    assert output_of(finish) == [] and stub.methods() == ["FinishAttempt"]


def test_trigger_and_wait_outside_a_task_points_to_the_client() -> None:
    with pytest.raises(RuntimeError, match="Client.trigger_and_wait"):
        child_task.trigger_and_wait(1)
    with pytest.raises(RuntimeError, match="inside a task function"):
        child_task.batch_trigger_and_wait([1])


def test_bad_options_are_refused_at_call_time() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        with pytest.raises(TypeError, match="unknown option.*colour"):
            child_task.trigger(1, colour="red")
        with pytest.raises(ValueError, match="metadata"):
            child_task.trigger_and_wait(1, metadata={"x": float("nan")})
        with pytest.raises(payloads.PayloadError, match="payload for task 'child'"):
            child_task.trigger_and_wait(object())
        return "ok"

    finish, stub = execute(t, assignment())
    assert output_of(finish) == "ok", finish.error.message
    assert stub.methods() == ["FinishAttempt"]


# ---- metadata ----------------------------------------------------------------------------


def test_metadata_starts_from_the_assignment_and_updates_are_fenced_writes() -> None:
    seen = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        seen["initial"] = context.metadata
        seen["parent"] = context.parent_run_id
        copy = context.metadata
        copy["mutated"] = True  # a copy: the run's metadata is unchanged
        await context.update_metadata(progress=50)
        seen["merged"] = context.metadata
        await context.set_metadata({"only": "this"})
        return context.metadata

    finish, stub = execute(t, assignment(metadata={"user": "ada", "n": 1}, parent="p-1"))
    assert seen["initial"] == {"user": "ada", "n": 1}
    assert seen["parent"] == "p-1"
    assert seen["merged"] == {"user": "ada", "n": 1, "progress": 50}
    assert output_of(finish) == {"only": "this"}
    updates = stub.requests("UpdateRunMetadata")
    assert [(u.run_id, u.attempt) for u in updates] == [("run-1", 2), ("run-1", 2)]
    assert dict(updates[0].metadata) == {"user": "ada", "n": 1.0, "progress": 50.0}


def test_metadata_defaults_and_validation() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        assert context.metadata == {} and context.parent_run_id is None
        with pytest.raises(TypeError, match="metadata must be a dict"):
            await context.set_metadata([1, 2])  # type: ignore[arg-type]
        return "ok"

    finish, stub = execute(t, assignment())
    assert output_of(finish) == "ok", finish.error.message
    assert stub.methods() == ["FinishAttempt"]


def test_refused_metadata_update_abandons_a_stale_attempt() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            await context.set_metadata({"a": 1})
        except Exception:
            return "swallowed"

    stub = FakeStub(refuse={"UpdateRunMetadata": grpc.StatusCode.FAILED_PRECONDITION})
    finish, _ = execute(t, assignment(), stub)
    assert finish is None and stub.methods() == ["UpdateRunMetadata"]
