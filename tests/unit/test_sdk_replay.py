"""Replay and in-place retry logic of steps, against an in-memory stand-in for
the WorkerService stub (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub

from cairn import payloads
from cairn.limits import MAX_TRY_ERRORS
from cairn.v1 import common_pb2
from worker_sdk import NonDeterminismError, NonRetryableError, Retry, StepFailedError, context, step
from worker_sdk._attempt import AttemptAbandoned, AttemptContext, enter_attempt
from worker_sdk._replay import build_journal, recorded_step, replay


def completed(position: int, name: str, value: Any) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=payloads.encode_json(value), encoding=payloads.JSON),
        attempt=1,
        tries=1,
    )


def failed(
    position: int, name: str, type_: str, message: str, non_retryable: bool = False
) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_FAILED,
        error=common_pb2.ErrorInfo(type=type_, message=message, non_retryable=non_retryable),
        attempt=1,
        tries=1,
    )


def run_in_attempt(
    fn: Any, *, journal: list[common_pb2.Step] = (), stub: FakeStub | None = None
) -> tuple[Any, AttemptContext]:
    """Runs fn() inside an attempt context of run "r1", attempt 2."""
    ctx = AttemptContext(
        namespace="default",
        run_id="r1",
        attempt=2,
        task_id="t",
        journal=build_journal(journal),
        stub=stub or FakeStub(),
        lease_seconds=5.0,
    )

    async def main() -> Any:
        enter_attempt(ctx)
        return await fn()

    return asyncio.run(main()), ctx


# --- pure journal logic ---------------------------------------------------------


def test_recorded_step_none_when_position_not_recorded() -> None:
    journal = build_journal([completed(0, "a", 1)])
    assert recorded_step(journal, "r1", 1, "b") is None
    assert recorded_step(journal, "r1", 0, "a").name == "a"


def test_recorded_step_mismatch_names_both_steps_and_the_run() -> None:
    journal = build_journal([completed(0, "download", 1)])
    with pytest.raises(NonDeterminismError) as info:
        recorded_step(journal, "run-9", 0, "upload")
    assert str(info.value) == (
        "non-determinism in run run-9: step position 0 was recorded "
        "as 'download' but the code now calls 'upload'"
    )


def test_replay_returns_output_or_raises_failure() -> None:
    assert replay(completed(0, "a", {"x": [1, 2]})) == {"x": [1, 2]}
    with pytest.raises(StepFailedError) as info:
        replay(failed(1, "b", "myapp.QuotaError", "over quota", True))
    err = info.value
    assert (err.step_name, err.error_type, err.message, err.non_retryable) == (
        "b",
        "myapp.QuotaError",
        "over quota",
        True,
    )


# --- steps inside an attempt ------------------------------------------------------


def test_recorded_step_returns_recorded_value_without_running_body() -> None:
    ran = []

    @step(name="fetch")
    async def fetch(x: int) -> int:
        ran.append(x)
        return x * 10

    async def body() -> list[int]:
        return [await fetch(1), await fetch(2)]

    stub = FakeStub()
    result, ctx = run_in_attempt(body, journal=[completed(0, "fetch", 777)], stub=stub)
    assert result == [777, 20]
    assert ran == [2]
    [record] = stub.records()
    assert (record.run_id, record.attempt, record.position, record.name) == ("r1", 2, 1, "fetch")
    assert record.status == common_pb2.STEP_STATUS_COMPLETED
    assert payloads.decode(record.output.data, record.output.encoding) == 20
    assert record.tries == 1
    assert ctx.next_position == 2


def test_mismatched_name_raises_non_determinism_naming_both() -> None:
    @step(name="upload")
    async def upload() -> None:
        raise AssertionError("must not run")

    async def body() -> None:
        await upload()

    with pytest.raises(
        NonDeterminismError, match="recorded as 'download' but the code now calls 'upload'"
    ) as info:
        run_in_attempt(body, journal=[completed(0, "download", "x")])
    assert isinstance(info.value, NonRetryableError)


def test_non_determinism_is_remembered_even_if_task_code_swallows_it() -> None:
    @step(name="b")
    async def b() -> None: ...

    async def body() -> str:
        try:
            await b()
        except Exception:
            pass
        return "ok"

    result, ctx = run_in_attempt(body, journal=[completed(0, "a", None)])
    assert result == "ok"
    assert isinstance(ctx.nondeterminism, NonDeterminismError)


def test_recorded_failed_step_reraises_step_failed_error() -> None:
    ran = []

    @step(name="charge")
    async def charge() -> None:
        ran.append(1)

    async def body() -> None:
        await charge()

    with pytest.raises(StepFailedError) as info:
        run_in_attempt(body, journal=[failed(0, "charge", "ValueError", "card declined")])
    assert ran == []
    assert info.value.error_type == "ValueError"
    assert info.value.message == "card declined"
    assert "card declined" in str(info.value) and "charge" in str(info.value)


def test_live_failure_and_replayed_failure_raise_the_same_exception() -> None:
    @step(name="boom")
    async def boom() -> None:
        raise ValueError("bad input")

    async def body() -> StepFailedError:
        try:
            await boom()
        except StepFailedError as exc:
            return exc
        raise AssertionError("expected StepFailedError")

    stub = FakeStub()
    live, _ = run_in_attempt(body, stub=stub)
    [record] = stub.records()
    assert record.status == common_pb2.STEP_STATUS_FAILED
    assert record.error.type == "ValueError" and record.error.message == "bad input"
    assert "Traceback" in record.error.stack_trace
    assert isinstance(live.__cause__, ValueError)
    recorded = common_pb2.Step(position=0, name="boom", status=record.status, error=record.error)
    replayed, _ = run_in_attempt(body, journal=[recorded])
    assert (live.step_name, live.error_type, live.message, live.non_retryable) == (
        replayed.step_name,
        replayed.error_type,
        replayed.message,
        replayed.non_retryable,
    )


def test_positions_follow_call_order_with_gather() -> None:
    @step(name="slow")
    async def slow(x: int) -> int:
        await asyncio.sleep(0.02)
        return x

    @step(name="fast")
    async def fast(x: int) -> int:
        return x

    async def body() -> list[int]:
        return list(await asyncio.gather(slow(1), fast(2), slow(3)))

    stub = FakeStub()
    result, _ = run_in_attempt(body, stub=stub)
    assert result == [1, 2, 3]
    by_position = {r.position: r.name for r in stub.records()}
    assert by_position == {0: "slow", 1: "fast", 2: "slow"}

    # Replaying the same journal returns every value without running any body.
    journal = [
        completed(r.position, r.name, payloads.decode(r.output.data, r.output.encoding))
        for r in stub.records()
    ]
    stub2 = FakeStub()
    result2, _ = run_in_attempt(body, journal=journal, stub=stub2)
    assert result2 == [1, 2, 3] and stub2.records() == []


def test_live_value_is_the_json_round_trip_like_replay() -> None:
    @step(name="pair")
    async def pair() -> tuple[int, int]:
        return (1, 2)

    async def body() -> Any:
        return await pair()

    result, _ = run_in_attempt(body)
    assert result == [1, 2]


def test_idempotency_key_is_run_and_position() -> None:
    keys = []

    @step(name="k")
    async def k() -> None:
        keys.append(context.idempotency_key)

    async def body() -> None:
        await k()
        await k()
        with pytest.raises(RuntimeError, match="inside a @step"):
            context.idempotency_key

    run_in_attempt(body, journal=[])
    assert keys == ["r1:0", "r1:1"]


def test_step_retries_in_place_then_records_tries() -> None:
    calls = []

    @step(name="flaky", retry=Retry(max_attempts=3, min_timeout=0))
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    async def body() -> str:
        return await flaky()

    stub = FakeStub()
    result, _ = run_in_attempt(body, stub=stub)
    assert result == "ok"
    assert len(calls) == 3
    [record] = stub.records()
    assert record.tries == 3 and record.status == common_pb2.STEP_STATUS_COMPLETED
    # The two failed tries' errors go with the step, oldest first, like a final error.
    assert [(e.type, e.message, e.non_retryable) for e in record.try_errors] == [
        ("ConnectionError", "try again", False),
        ("ConnectionError", "try again", False),
    ]
    assert all("in flaky" in e.stack_trace for e in record.try_errors)


def test_a_step_that_succeeds_at_once_sends_no_try_errors() -> None:
    @step(name="fine", retry=Retry(max_attempts=3, min_timeout=0))
    async def fine() -> str:
        return "ok"

    stub = FakeStub()
    run_in_attempt(fine, stub=stub)
    [record] = stub.records()
    assert record.tries == 1 and list(record.try_errors) == []


def test_try_errors_keep_the_latest_max_try_errors_oldest_first() -> None:
    tries = MAX_TRY_ERRORS + 5
    calls: list[int] = []

    @step(name="stubborn", retry=Retry(max_attempts=tries, min_timeout=0, max_timeout=0))
    async def stubborn() -> None:
        calls.append(1)
        raise ValueError(f"try {len(calls)}")

    stub = FakeStub()
    with pytest.raises(StepFailedError, match=f"try {tries}"):
        run_in_attempt(stubborn, stub=stub)
    [record] = stub.records()
    assert record.tries == tries and record.error.message == f"try {tries}"
    # The final error is the step's error; of the tries before it, the latest MAX_TRY_ERRORS.
    assert [e.message for e in record.try_errors] == [
        f"try {n}" for n in range(tries - MAX_TRY_ERRORS, tries)
    ]


def test_step_exhausting_retries_records_failure_with_tries() -> None:
    calls = []

    @step(name="down", retry=Retry(max_attempts=2, min_timeout=0))
    async def down() -> None:
        calls.append(1)
        raise ConnectionError("still down")

    async def body() -> None:
        await down()

    stub = FakeStub()
    with pytest.raises(StepFailedError) as info:
        run_in_attempt(body, stub=stub)
    assert len(calls) == 2
    [record] = stub.records()
    assert record.tries == 2 and record.status == common_pb2.STEP_STATUS_FAILED
    assert record.error.type == "ConnectionError" and not record.error.non_retryable
    # The first try's error; the second (last) is the step's own error.
    assert [(e.type, e.message) for e in record.try_errors] == [("ConnectionError", "still down")]
    assert not info.value.non_retryable


@pytest.mark.parametrize("error", [NonRetryableError("no"), KeyError("k")])
def test_non_retryable_error_in_step_is_not_retried(error: Exception) -> None:
    calls = []

    @step(name="strict", retry=Retry(max_attempts=5, min_timeout=0, non_retryable=(KeyError,)))
    async def strict() -> None:
        calls.append(1)
        raise error

    async def body() -> None:
        await strict()

    stub = FakeStub()
    with pytest.raises(StepFailedError) as info:
        run_in_attempt(body, stub=stub)
    assert len(calls) == 1
    [record] = stub.records()
    assert record.tries == 1 and record.error.non_retryable
    assert info.value.non_retryable
    assert record.error.type == (
        "KeyError" if isinstance(error, KeyError) else "worker_sdk.errors.NonRetryableError"
    )


def test_step_default_retry_is_a_single_try() -> None:
    calls = []

    @step
    async def once() -> None:
        calls.append(1)
        raise RuntimeError("x")

    async def body() -> None:
        await once()

    with pytest.raises(StepFailedError):
        run_in_attempt(body)
    assert len(calls) == 1
    assert once.step_name.endswith("once")


def test_non_serialisable_step_output_fails_non_retryable_naming_the_step() -> None:
    @step(name="weird")
    async def weird() -> object:
        return object()

    async def body() -> None:
        await weird()

    stub = FakeStub()
    with pytest.raises(StepFailedError) as info:
        run_in_attempt(body, stub=stub)
    assert info.value.error_type == "TypeError" and "weird" in info.value.message
    [record] = stub.records()
    assert record.error.non_retryable


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS]
)
def test_refused_record_abandons_the_attempt(code: grpc.StatusCode) -> None:
    @step(name="s")
    async def s() -> int:
        return 1

    async def body() -> None:
        try:
            await s()
        except Exception:  # user code cannot swallow it
            raise AssertionError("AttemptAbandoned must not be an Exception")

    with pytest.raises(AttemptAbandoned, match=code.name):
        run_in_attempt(body, stub=FakeStub(refuse={"RecordStep": code}))


def test_step_outside_a_task_just_runs() -> None:
    @step(name="plain", retry=Retry(max_attempts=3, min_timeout=0))
    async def plain(x: int) -> tuple[int, int]:
        return (x, x)

    assert asyncio.run(plain(4)) == (4, 4)


def test_nested_step_runs_as_a_plain_call() -> None:
    @step(name="inner")
    async def inner() -> int:
        return 5

    @step(name="outer")
    async def outer() -> int:
        return await inner() + 1

    async def body() -> int:
        return await outer()

    stub = FakeStub()
    result, ctx = run_in_attempt(body, stub=stub)
    assert result == 6
    assert [r.name for r in stub.records()] == ["outer"]
    assert ctx.next_position == 1
