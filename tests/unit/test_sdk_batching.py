"""BatchingStub (worker_sdk/batching.py), the worker's group commit, against an
in-memory stand-in for the WorkerService stub: a write made while nothing is in
flight goes alone as its own call; writes made while one is in flight go
together as one BatchWrite when it returns; each caller gets its own result or
error, whatever happens to the others.

The fake's calls can be held in flight (``hold()`` ... ``release()``), which is
how a test makes writes arrive "while one is in flight" without any timing: the
event loop only moves when the test awaits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub, rpc_error

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk._batching import BatchingStub, attempt_gone_name
from worker_sdk._grpc import attempt_gone_of

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS


# ---- the fake stub -------------------------------------------------------------------------


def step(
    run: str, position: int, name: str = "s", attempt: int = 1, namespace: str = "default"
) -> wpb.RecordStepRequest:
    return wpb.RecordStepRequest(
        namespace=namespace,
        run_id=run,
        attempt=attempt,
        position=position,
        name=name,
        status=cpb.STEP_STATUS_COMPLETED,
        tries=1,
        output=cpb.Payload(data=f'"{run}:{position}"'.encode(), encoding="json/plain"),
    )


def finish(
    run: str, outcome: int = wpb.ATTEMPT_OUTCOME_COMPLETED, attempt: int = 1, namespace: str = "default"
) -> wpb.FinishAttemptRequest:
    return wpb.FinishAttemptRequest(
        namespace=namespace,
        run_id=run,
        attempt=attempt,
        outcome=outcome,
        output=cpb.Payload(data=b'"done"', encoding="json/plain"),
    )


def write_of(w: wpb.AttemptWrite) -> Any:
    return getattr(w, w.WhichOneof("write"))


async def settle() -> None:
    """Lets every task that can run do so until it waits again. Nothing in this
    file waits on a clock, so a bounded number of loop turns is enough."""
    for _ in range(20):
        await asyncio.sleep(0)


async def started(
    stub: BatchingStub, request: Any, fake: FakeStub, calls_before: int | None = None
) -> asyncio.Task[Any]:
    """Starts a write as its own task and returns once the fake has seen a new call
    (the write is in flight)."""
    before = len(fake.calls) if calls_before is None else calls_before
    method = stub.RecordStep if isinstance(request, wpb.RecordStepRequest) else stub.FinishAttempt
    task = asyncio.create_task(method(request))
    for _ in range(100):
        if len(fake.calls) > before:
            return task
        await asyncio.sleep(0)
    raise AssertionError(f"the write never reached the stub; calls: {fake.methods()}")


def spawn(stub: BatchingStub, *requests: Any, timeout: float | None = None) -> list[asyncio.Task[Any]]:
    tasks = []
    for r in requests:
        method = stub.RecordStep if isinstance(r, wpb.RecordStepRequest) else stub.FinishAttempt
        tasks.append(asyncio.create_task(method(r, timeout=timeout)))
    return tasks


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run with a ceiling, so a write left unanswered fails the test
    instead of hanging it."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), timeout=10)

    return asyncio.run(bounded())


# ---- a write alone ---------------------------------------------------------------------------


def test_a_write_alone_goes_as_its_own_call_with_its_timeout() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        recorded = await stub.RecordStep(step("r1", 0, "fetch"), timeout=7.5)
        assert recorded.step.position == 0 and recorded.step.name == "fetch"
        finished = await stub.FinishAttempt(finish("r1"), timeout=3.0)
        assert finished.run_status == cpb.RUN_STATUS_COMPLETED
        # One after the other (each returned before the next was made): no batch.
        assert fake.methods() == ["RecordStep", "FinishAttempt"]
        assert [t for _, _, t in fake.calls] == [7.5, 3.0]
        assert fake.calls[0][1] == step("r1", 0, "fetch")
        assert fake.calls[1][1] == finish("r1")

    run(main)


def test_a_refused_write_alone_raises_the_calls_own_error() -> None:
    async def main() -> None:
        fake = FakeStub()
        fake.refuse_writes[("r1", 0)] = (FAILED_PRECONDITION, "attempt 1 of run r1 is no longer current")
        stub = BatchingStub(fake)
        with pytest.raises(grpc.RpcError) as info:
            await stub.RecordStep(step("r1", 0))
        assert info.value.code() == FAILED_PRECONDITION
        assert info.value.details() == "attempt 1 of run r1 is no longer current"
        assert fake.methods() == ["RecordStep"]
        # The stub still works afterwards.
        assert (await stub.RecordStep(step("r2", 0))).step.position == 0

    run(main)


# ---- writes made while one is in flight --------------------------------------------------------


def test_writes_made_while_one_is_in_flight_go_as_one_batch_in_order() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        assert fake.methods() == ["RecordStep"]
        later = [
            step("r1", 0, "a"),
            finish("r2"),
            step("r3", 4, "b"),
            finish("r4", wpb.ATTEMPT_OUTCOME_FAILED),
            step("r1", 1, "c"),
        ]
        tasks = spawn(stub, *later, timeout=2.0)
        await settle()
        assert fake.methods() == ["RecordStep"], "nothing more may be sent while a write is in flight"
        fake.release()
        results = await asyncio.gather(first, *tasks)

        assert fake.methods() == ["RecordStep", "BatchWrite"]
        (batch,) = fake.batches()
        assert batch.namespace == "default"
        assert [w.WhichOneof("write") for w in batch.writes] == [
            "record_step",
            "finish_attempt",
            "record_step",
            "finish_attempt",
            "record_step",
        ]
        assert [write_of(w) for w in batch.writes] == later  # unchanged, in order
        assert fake.calls[1][2] == 2.0  # the batch's timeout is its writes'
        # Each caller got its own write's answer.
        assert results[0].step.position == 0
        assert (results[1].step.position, results[1].step.name) == (0, "a")
        assert results[2].run_status == cpb.RUN_STATUS_COMPLETED
        assert (results[3].step.position, results[3].step.name) == (4, "b")
        assert results[4].run_status == cpb.RUN_STATUS_FAILED
        assert (results[5].step.position, results[5].step.name) == (1, "c")
        assert isinstance(results[1], wpb.RecordStepResponse)
        assert isinstance(results[2], wpb.FinishAttemptResponse)

        # Quiet again: the next write goes alone at once, not into a batch.
        assert (await stub.RecordStep(step("r5", 0))).step.position == 0
        assert fake.methods() == ["RecordStep", "BatchWrite", "RecordStep"]

    run(main)


def test_writes_made_in_the_same_turn_are_sent_together() -> None:
    # Nothing in flight, but several writes made before the loop turns: the
    # first call already carries all of them.
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        results = await asyncio.gather(*spawn(stub, step("a", 0), step("b", 0), finish("c")))
        assert fake.methods() == ["BatchWrite"]
        assert [write_of(w).run_id for w in fake.batches()[0].writes] == ["a", "b", "c"]
        assert fake.calls[0][2] is None  # no write had a timeout: neither has the batch
        assert [type(r) for r in results] == [
            wpb.RecordStepResponse,
            wpb.RecordStepResponse,
            wpb.FinishAttemptResponse,
        ]

    run(main)


def test_the_batch_timeout_is_the_longest_of_its_writes() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        await asyncio.gather(
            asyncio.create_task(stub.RecordStep(step("a", 0), timeout=1.0)),
            asyncio.create_task(stub.RecordStep(step("b", 0))),
            asyncio.create_task(stub.FinishAttempt(finish("c"), timeout=4.0)),
            asyncio.create_task(stub.RecordStep(step("d", 0), timeout=2.0)),
        )
        assert fake.methods() == ["BatchWrite"]
        assert fake.calls[0][2] == 4.0

    run(main)


def test_the_batch_is_in_the_namespace_of_its_writes() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        await asyncio.gather(
            *spawn(stub, step("a", 0, namespace="billing"), finish("b", namespace="billing"))
        )
        (batch,) = fake.batches()
        assert batch.namespace == "billing"

    run(main)


# ---- errors ------------------------------------------------------------------------------------


def test_an_item_error_is_raised_to_that_caller_only() -> None:
    async def main() -> None:
        fake = FakeStub()
        stale = "attempt 1 of run r2 is no longer current (run is completed, current attempt 1)"
        fake.refuse_writes[("r2", None)] = (FAILED_PRECONDITION, stale)
        fake.refuse_writes[("r3", 0)] = (ALREADY_EXISTS, "step position 0 of run r3 is already recorded")
        stub = BatchingStub(fake)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        tasks = spawn(stub, step("r1", 0), finish("r2"), step("r3", 0), step("r4", 0))
        await settle()
        fake.release()
        outcomes = await asyncio.gather(first, *tasks, return_exceptions=True)

        assert fake.methods() == ["RecordStep", "BatchWrite"]
        ok0, ok1, refused_finish, refused_step, ok4 = outcomes
        for ok in (ok0, ok1, ok4):
            assert isinstance(ok, wpb.RecordStepResponse), ok
        assert ok4.step.position == 0 and ok1.step.output.data == b'"r1:0"'

        assert isinstance(refused_finish, grpc.RpcError)
        assert isinstance(refused_finish, grpc.aio.AioRpcError)
        assert refused_finish.code() == FAILED_PRECONDITION
        assert refused_finish.details() == stale
        assert isinstance(refused_step, grpc.RpcError)
        assert refused_step.code() == ALREADY_EXISTS
        assert refused_step.details() == "step position 0 of run r3 is already recorded"
        assert refused_step is not refused_finish

    run(main)


def test_an_item_refused_as_attempt_gone_carries_why_as_the_calls_trailing_metadata() -> None:
    async def main() -> None:
        fake = FakeStub()
        fake.refuse_writes[("r1", 0)] = (FAILED_PRECONDITION, "attempt 1 of run r1 was canceled", "canceled")
        fake.refuse_writes[("r2", None)] = (FAILED_PRECONDITION, "attempt 1 lost its lease", "superseded")
        fake.refuse_writes[("r3", 0)] = (ALREADY_EXISTS, "step position 0 of run r3 is already recorded")
        stub = BatchingStub(fake)
        outcomes = await asyncio.gather(
            *spawn(stub, step("r1", 0), finish("r2"), step("r3", 0)), return_exceptions=True
        )
        assert fake.methods() == ["BatchWrite"]
        [batch] = fake.batches()
        assert len(batch.writes) == 3
        canceled, superseded, other = outcomes
        for refused in outcomes:
            assert isinstance(refused, grpc.aio.AioRpcError), refused
        assert attempt_gone_of(canceled) == "canceled"
        assert attempt_gone_of(superseded) == "superseded"
        assert attempt_gone_of(other) is None
        assert canceled.details() == "attempt 1 of run r1 was canceled"

    run(main)


def test_attempt_gone_names_follow_the_protocol_enum() -> None:
    assert attempt_gone_name(wpb.ATTEMPT_GONE_UNSPECIFIED) == ""
    assert attempt_gone_name(wpb.ATTEMPT_GONE_CANCELED) == "canceled"
    assert attempt_gone_name(wpb.ATTEMPT_GONE_TIMED_OUT) == "timed_out"
    assert attempt_gone_name(wpb.ATTEMPT_GONE_SUPERSEDED) == "superseded"
    assert attempt_gone_name(wpb.ATTEMPT_GONE_ENDED) == "ended"
    assert attempt_gone_name(77) == "77"  # newer than this SDK: still a reason


def test_an_item_error_with_an_unknown_code_is_raised_as_unknown() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        original = fake.BatchWrite

        async def odd_code(request: Any, timeout: float | None = None) -> Any:
            response = await original(request, timeout)
            response.results[1].error.code = 99
            response.results[1].error.message = "from a newer server"
            return response

        fake.BatchWrite = odd_code  # type: ignore[method-assign]
        ok, odd = await asyncio.gather(*spawn(stub, step("a", 0), step("b", 0)), return_exceptions=True)
        assert isinstance(ok, wpb.RecordStepResponse)
        assert isinstance(odd, grpc.RpcError)
        assert odd.code() == grpc.StatusCode.UNKNOWN
        assert odd.details() == "from a newer server"

    run(main)


def test_a_failed_batch_call_raises_its_error_to_every_caller_of_the_batch() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.batch_error = rpc_error(grpc.StatusCode.UNAVAILABLE, "history unavailable")
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        tasks = spawn(stub, step("r1", 0), finish("r2"), step("r3", 0))
        await settle()
        fake.release()
        outcomes = await asyncio.gather(first, *tasks, return_exceptions=True)

        assert isinstance(outcomes[0], wpb.RecordStepResponse)  # it went alone, and succeeded
        for failed in outcomes[1:]:
            assert isinstance(failed, grpc.RpcError), failed
            assert failed.code() == grpc.StatusCode.UNAVAILABLE
            assert failed.details() == "history unavailable"

        # Nothing is stuck: the next writes are sent as usual.
        fake.batch_error = None
        assert (await stub.FinishAttempt(finish("r2"))).run_status == cpb.RUN_STATUS_COMPLETED
        again = await asyncio.gather(*spawn(stub, step("r1", 0), step("r3", 0)))
        assert [r.step.position for r in again] == [0, 0]
        assert fake.methods() == ["RecordStep", "BatchWrite", "FinishAttempt", "BatchWrite"]

    run(main)


def test_a_non_grpc_exception_of_the_batch_call_reaches_every_caller() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.batch_error = RuntimeError("channel closed")
        outcomes = await asyncio.gather(*spawn(stub, step("a", 0), step("b", 0)), return_exceptions=True)
        assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
        assert all(str(o) == "channel closed" for o in outcomes)

    run(main)


def test_a_result_count_mismatch_fails_every_caller_with_internal() -> None:
    async def main() -> None:
        fake = FakeStub()
        fake.drop_results = 1
        stub = BatchingStub(fake)
        outcomes = await asyncio.gather(
            *spawn(stub, step("a", 0), finish("b"), step("c", 0)), return_exceptions=True
        )
        assert fake.methods() == ["BatchWrite"]
        for o in outcomes:
            assert isinstance(o, grpc.RpcError), o
            assert o.code() == grpc.StatusCode.INTERNAL
            assert "2 results for 3 writes" in o.details()
        # And the stub is still usable.
        fake.drop_results = 0
        assert (await stub.RecordStep(step("d", 0))).step.position == 0

    run(main)


# ---- cancellation ------------------------------------------------------------------------------


def test_a_caller_canceled_before_its_batch_is_sent_is_left_out() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        a, b, c = spawn(stub, step("r1", 0), step("r2", 0), finish("r3"))
        await settle()
        b.cancel()
        await settle()
        fake.release()
        ra, rc, r0 = await a, await c, await first
        with pytest.raises(asyncio.CancelledError):
            await b
        assert ra.step.position == 0 and rc.run_status == cpb.RUN_STATUS_COMPLETED
        assert r0.step.position == 0
        (batch,) = fake.batches()
        assert [write_of(w).run_id for w in batch.writes] == ["r1", "r3"]

    run(main)


def test_when_all_but_one_caller_gave_up_the_last_write_goes_alone() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        a, b, c = spawn(stub, step("r1", 0), step("r2", 0), step("r3", 0))
        await settle()
        a.cancel()
        c.cancel()
        await settle()
        fake.release()
        assert (await b).step.position == 0
        await first
        for t in (a, c):
            with pytest.raises(asyncio.CancelledError):
                await t
        assert fake.methods() == ["RecordStep", "RecordStep"]
        assert fake.calls[1][1].run_id == "r2"

    run(main)


def test_a_caller_canceled_while_its_batch_is_in_flight_does_not_break_the_others() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.hold()
        tasks = spawn(stub, step("r1", 0), finish("r2"), step("r3", 0))
        await settle()
        assert fake.methods() == ["BatchWrite"]  # in flight, held
        tasks[1].cancel()
        await settle()
        fake.release()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(outcomes[0], wpb.RecordStepResponse)
        assert isinstance(outcomes[1], asyncio.CancelledError)
        assert isinstance(outcomes[2], wpb.RecordStepResponse)
        # The batch held all three: the canceled write was already sent.
        assert len(fake.batches()[0].writes) == 3
        # The flusher survived: later writes are answered.
        assert (await stub.RecordStep(step("r4", 0))).step.position == 0

    run(main)


def test_a_canceled_caller_of_a_refused_write_does_not_break_the_others() -> None:
    async def main() -> None:
        fake = FakeStub()
        fake.refuse_writes[("r2", 0)] = (FAILED_PRECONDITION, "stale")
        stub = BatchingStub(fake)
        fake.hold()
        tasks = spawn(stub, step("r1", 0), step("r2", 0), step("r3", 0))
        await settle()
        tasks[1].cancel()
        await settle()
        fake.release()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(outcomes[0], wpb.RecordStepResponse)
        assert isinstance(outcomes[1], asyncio.CancelledError)
        assert isinstance(outcomes[2], wpb.RecordStepResponse)

    run(main)


# ---- batch size ---------------------------------------------------------------------------------


def test_max_batch_splits_a_large_backlog_in_order() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake, max_batch=3)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        backlog = [step(f"r{i}", 0) for i in range(1, 8)]  # 7 writes: 3 + 3 + 1
        tasks = spawn(stub, *backlog)
        await settle()
        fake.release()
        results = await asyncio.gather(first, *tasks)
        assert fake.methods() == ["RecordStep", "BatchWrite", "BatchWrite", "RecordStep"]
        sent = [[write_of(w).run_id for w in b.writes] for b in fake.batches()]
        assert sent == [["r1", "r2", "r3"], ["r4", "r5", "r6"]]
        assert fake.calls[-1][1].run_id == "r7"
        assert [r.step.position for r in results] == [0] * 8

    run(main)


def test_the_default_max_batch_takes_a_few_hundred_writes_at_once() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        results = await asyncio.gather(*spawn(stub, *[step(f"r{i}", i) for i in range(300)]))
        sizes = [len(b.writes) for b in fake.batches()]
        assert sum(sizes) == 300 and len(sizes) == 2, sizes
        assert max(sizes) <= 1000  # what the frontend accepts in one batch
        assert [r.step.position for r in results] == list(range(300))

    run(main)


# ---- everything else ---------------------------------------------------------------------------


def test_other_attributes_are_the_wrapped_stubs() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        assert stub.marker == fake.marker
        assert stub.Heartbeat == fake.Heartbeat
        assert isinstance(
            await stub.Heartbeat(wpb.HeartbeatRequest(run_id="r1", attempt=1), timeout=5),
            wpb.HeartbeatResponse,
        )
        assert fake.methods() == ["Heartbeat"]
        with pytest.raises(AttributeError):
            stub.NoSuchMethod  # noqa: B018

    run(main)


def test_a_heartbeat_is_not_held_back_by_a_write_in_flight() -> None:
    async def main() -> None:
        fake = FakeStub()
        stub = BatchingStub(fake)
        fake.hold()
        first = await started(stub, step("r0", 0), fake)
        beat = asyncio.create_task(stub.Heartbeat(wpb.HeartbeatRequest(run_id="r1", attempt=1)))
        await settle()
        # Not queued behind the write: the call was made at once.
        assert fake.methods() == ["RecordStep", "Heartbeat"]
        fake.release()
        await asyncio.gather(first, beat)

    run(main)
