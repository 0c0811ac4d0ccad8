"""Durable waits inside an attempt (execute_attempt against an in-memory
stand-in for the WorkerService and WaitService stubs): sleeping, waiting for an
event or a wait token, and how the attempt suspends: what is recorded, what is
sent, and what replay returns."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from harness.waiting import wait_for_async
from sdk_fakes import FakeStub
from sdk_wait_helpers import after, assignment, before, completed, execute, output_of

from cairn import payloads
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import InvalidArgumentError, WaitTimeoutError, WaitToken, step, task, wait
from worker_sdk._attempt import AttemptSuspended
from worker_sdk._execution import execute_attempt


def failed(position: int, name: str, error_type: str, message: str) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_FAILED,
        error=common_pb2.ErrorInfo(type=error_type, message=message),
    )


# ---- sleeping ----------------------------------------------------------------------------


def sleep_step(position: int, until: datetime) -> common_pb2.Step:
    """A sleep's step as history records it when its time comes: the wait's name
    and the time as a json/plain RFC 3339 string."""
    return completed(position, "wait.sleep", until.astimezone(UTC).isoformat(timespec="milliseconds"))


def test_sleep_suspends_on_a_sleep_wait_at_its_position_and_records_nothing(
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
    assert stub.methods() == ["RecordStep", "FinishAttempt"]  # "before", then the suspension
    assert [r.name for r in stub.records()] == ["before"]
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    spec = finish.wait
    assert (spec.position, spec.name, spec.WhichOneof("kind")) == (1, "wait.sleep", "sleep")
    until = spec.sleep.until.ToDatetime(tzinfo=UTC)
    assert timedelta(minutes=59) < until - started < timedelta(minutes=61)
    assert not spec.HasField("timeout_at")
    assert (finish.run_id, finish.attempt) == ("run-1", 2)
    assert reached == []
    assert "attempt suspended: run=run-1 attempt=2" in caplog.text
    assert "sleep until" in caplog.text


def test_wait_until_suspends_until_that_time() -> None:
    when = datetime(2030, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))

    @task(id="t")
    async def t(payload: Any) -> None:
        await wait.until(when)

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["FinishAttempt"]
    assert finish.wait.sleep.until.ToDatetime(tzinfo=UTC) == when
    assert (finish.wait.position, finish.wait.name) == (0, "wait.sleep")


def test_a_sleep_history_recorded_is_passed_on_replay() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        await before()
        await wait.for_(3600)
        return await after()

    fired = datetime.now(UTC) - timedelta(seconds=5)
    finish, stub = execute(t, assignment([completed(0, "before", "before"), sleep_step(1, fired)]))
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED and output_of(finish) == "after"
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    assert (stub.records()[0].position, stub.records()[0].name) == (2, "after")


def test_a_recorded_sleep_passes_whatever_its_output() -> None:
    # A recorded sleep is resolved; an output that is not a time does not hold it up.
    @task(id="t")
    async def t(payload: Any) -> str:
        await wait.for_(3600)
        return "woke"

    finish, stub = execute(t, assignment([completed(0, "wait.sleep", None)]))
    assert output_of(finish) == "woke" and stub.methods() == ["FinishAttempt"]


def test_a_sleep_recorded_for_another_name_is_non_determinism() -> None:
    @task(id="t")
    async def t(payload: Any) -> None:
        await wait.for_(3600)

    finish, _ = execute(t, assignment([completed(0, "wait.for_event", {"ok": True})]))
    assert finish.error.type == "worker_sdk.errors.NonDeterminismError"


def test_short_sleeps_record_their_step_and_run_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_INLINE_WAIT_SECONDS", "0.5")

    around_the_first: list[datetime] = []

    @task(id="t")
    async def t(payload: Any) -> str:
        around_the_first.append(datetime.now(UTC))
        await wait.for_(0.2)
        around_the_first.append(datetime.now(UTC))
        await wait.until(datetime.now(UTC) + timedelta(seconds=0.1))
        return await after()

    t0 = time.monotonic()
    finish, stub = execute(t, assignment())
    assert time.monotonic() - t0 >= 0.29
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED and output_of(finish) == "after"
    records = stub.records()
    assert [(r.position, r.name) for r in records] == [(0, "wait.sleep"), (1, "wait.sleep"), (2, "after")]
    # The step as history records a sleep: its time as an RFC 3339 string, 0.2 s
    # after the call (to the millisecond, cut), and reached before the sleep returned.
    # Bounded by times taken in the task, not by the test's: a slow machine can
    # delay the task's start but not change these.
    until = datetime.fromisoformat(payloads.decode(records[0].output.data, records[0].output.encoding))
    assert until.tzinfo is not None
    called, returned = around_the_first
    assert called + timedelta(seconds=0.199) <= until <= returned, (called, until, returned)
    assert all(r.status == common_pb2.STEP_STATUS_COMPLETED and r.tries == 1 for r in records)


def test_recorded_short_remainder_sleeps_in_place() -> None:
    # Recorded by a worker that slept in place and stopped: the rest is slept here.
    @task(id="t")
    async def t(payload: Any) -> str:
        await wait.for_(timedelta(hours=1))
        return "woke"

    t0 = time.monotonic()  # before soon is set: a pause between them must not shorten what is measured
    soon = datetime.now(UTC) + timedelta(seconds=0.2)
    finish, stub = execute(t, assignment([sleep_step(0, soon)]))
    assert time.monotonic() - t0 >= 0.15
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


@step(name="slow")
async def slow_step() -> str:
    await asyncio.sleep(0.2)
    return "slow"


def test_code_left_running_above_a_suspension_writes_nothing() -> None:
    finished: list[str] = []

    @step(name="slow")
    async def slow() -> str:
        await asyncio.sleep(0.2)
        finished.append("slow")
        return "slow"

    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(wait.for_event("a"), slow())  # the wait at 0, the step at 1

    async def main() -> tuple[Any, FakeStub]:
        stub = FakeStub()
        finish = await execute_attempt(stub, "default", t, assignment())

        async def body_finished() -> bool:
            return bool(finished)

        await wait_for_async(body_finished, 10, message="the step's body never finished")
        assert finished == ["slow"]
        await asyncio.sleep(0)  # let its record attempt, if any, reach the stub
        return finish, stub

    finish, stub = asyncio.run(main())
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED
    assert finish.wait.position == 0
    assert stub.methods() == ["FinishAttempt"]


def test_suspension_waits_for_running_steps_below_the_wait_to_record() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        # Both steps at positions 0 and 1 still run when the wait (2) suspends.
        return await asyncio.gather(slow_step(), before(), wait.for_event("a"))

    t0 = time.monotonic()
    finish, stub = execute(t, assignment())
    assert time.monotonic() - t0 >= 0.19
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED and finish.wait.position == 2
    assert stub.methods() == ["RecordStep", "RecordStep", "FinishAttempt"]
    assert sorted((r.position, r.name) for r in stub.records()) == [(0, "slow"), (1, "before")]


def test_suspension_waits_for_a_lower_step_that_fails_and_records_its_failure() -> None:
    @step(name="breaks")
    async def breaks() -> None:
        await asyncio.sleep(0.05)
        raise ValueError("no")

    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(breaks(), wait.for_event("a"), return_exceptions=True)

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    assert stub.records()[0].status == common_pb2.STEP_STATUS_FAILED
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED and finish.wait.position == 1


def test_a_lower_step_never_awaited_fails_the_suspension_naming_its_position() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        pending = before()  # takes position 0 but never runs
        try:
            return await wait.for_event("a")
        finally:
            pending.close()  # type: ignore[attr-defined]

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["FinishAttempt"]
    assert finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert finish.error.type == "worker_sdk.errors.CairnError"
    assert "position 0 below it is not recorded" in finish.error.message


def test_two_waits_over_a_running_lower_step_still_fail_with_concurrent_wait_error() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(slow_step(), wait.for_event("a"), wait.for_event("b"))

    finish, stub = execute(t, assignment())
    assert [r.outcome for r in stub.requests("FinishAttempt")] == [wpb.ATTEMPT_OUTCOME_FAILED]
    assert finish.error.type == "worker_sdk.errors.ConcurrentWaitError"


def test_a_wait_arriving_while_another_waits_for_lower_steps_fails_both() -> None:
    seen: list[str] = []
    late_wait_done = asyncio.Event()

    @step(name="slow")
    async def held() -> str:
        # Runs until the late wait has come and gone, however slow the machine: with a
        # fixed sleep here a pause longer than it could let the first wait suspend alone.
        await asyncio.wait_for(late_wait_done.wait(), 10)
        return "slow"

    async def late_wait() -> Any:
        # The first wait is waiting for the held step by now: this sleep spans at
        # least two turns of the loop (its timer, then this task's wake-up), and the
        # first wait needs one after claiming the suspension.
        await asyncio.sleep(0.05)
        try:
            return await wait.for_event("b")
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise
        finally:
            late_wait_done.set()

    @task(id="t")
    async def t(payload: Any) -> Any:
        lower = held()  # position 0
        first = wait.for_event("a")  # position 1
        try:
            return await asyncio.gather(lower, first, late_wait())
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise

    finish, stub = execute(t, assignment())
    assert [r.outcome for r in stub.requests("FinishAttempt")] == [wpb.ATTEMPT_OUTCOME_FAILED]
    assert finish.error.type == "worker_sdk.errors.ConcurrentWaitError"
    assert "ConcurrentWaitError" in seen


def test_a_lower_step_refused_as_gone_abandons_the_attempt_before_it_suspends() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await asyncio.gather(slow_step(), wait.for_event("a"))

    stub = FakeStub()
    stub.refuse_writes[("run-1", 0)] = (grpc.StatusCode.FAILED_PRECONDITION, "run canceled", "canceled")
    finish, _ = execute(t, assignment(), stub)
    assert finish is None
    assert stub.methods() == ["RecordStep"]
