"""The SDK and a refusal by a limit of the API key (RESOURCE_EXHAUSTED with the
retry delay in the trailing metadata cairn.limits.RETRY_AFTER_KEY):
RateLimitedError (exported, under CairnError), not QueueFullError; idempotent
calls (reads, polls, heartbeats, an attempt's writes, triggers with an
idempotency key) are sent again after the delay, within the call's deadline;
the others raise at once; WaitRun and the watches go on after the delay; the
CLI prints one line. In-memory stubs, no server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub
from test_sdk_watch import HISTORY, client_with

import worker_sdk
from cairn.limits import RETRY_AFTER_KEY
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli import channel as cli_channel
from worker_sdk import CairnError, QueueFullError, RateLimitedError, RunStatus, _grpc

LIMITED = (
    "request rate limit of API key k1: more than 5 requests/s (burst 10) at this frontend; retry after 20 ms"
)


def limited(ms: int = 20, details: str = LIMITED) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata((RETRY_AFTER_KEY, str(ms)))
    return grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), trailing, details)


def queue_full() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "queue 'q' is full"
    )


class Method:
    """A unary method refusing its first `refusals` calls with `error`, then answering `answer`."""

    def __init__(self, refusals: int, error: Exception, answer: Any = "ok") -> None:
        self.refusals = refusals
        self.error = error
        self.answer = answer
        self.timeouts: list[float] = []
        self.times: list[float] = []

    async def __call__(self, request: Any, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout or 0.0)
        self.times.append(time.monotonic())
        if len(self.timeouts) <= self.refusals:
            raise self.error
        return self.answer


def test_a_refusal_with_a_retry_delay_is_rate_limited_and_one_without_is_a_full_queue() -> None:
    error = _grpc.to_cairn_error(limited(1500))
    assert type(error) is RateLimitedError and isinstance(error, CairnError)
    assert error.retry_after == 1.5 and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "API key k1" in str(error)
    assert type(_grpc.to_cairn_error(queue_full())) is QueueFullError
    assert _grpc.retry_delay_of(queue_full()) is None
    assert _grpc.retry_delay_of(limited(250)) == 0.25
    assert worker_sdk.RateLimitedError is RateLimitedError and "RateLimitedError" in worker_sdk.__all__
    assert "RateLimitedError" in worker_sdk.errors.__all__


def test_which_requests_are_sent_again() -> None:
    assert _grpc.idempotent(rpb.GetRunRequest())
    assert _grpc.idempotent(rpb.WaitRunRequest())
    assert _grpc.idempotent(qpb.PauseQueueRequest())
    assert _grpc.idempotent(wpb.PollAttemptRequest()) and _grpc.idempotent(wpb.HeartbeatRequest())
    assert not _grpc.idempotent(rpb.TriggerRunRequest(task_id="t"))
    assert _grpc.idempotent(rpb.TriggerRunRequest(task_id="t", idempotency_key="order-1"))
    keyed = rpb.TriggerRunRequest(task_id="t", idempotency_key="a")
    assert _grpc.idempotent(rpb.BatchTriggerRunsRequest(runs=[keyed, keyed]))
    assert not _grpc.idempotent(rpb.BatchTriggerRunsRequest(runs=[keyed, rpb.TriggerRunRequest(task_id="t")]))
    assert not _grpc.idempotent(rpb.CancelRunRequest()) and not _grpc.idempotent(rpb.ReplayRunRequest())


def test_an_idempotent_call_is_sent_again_after_the_delay_within_its_deadline() -> None:
    method = Method(2, limited(30))
    assert asyncio.run(_grpc.call_mapped(method, rpb.GetRunRequest(), 5.0)) == "ok"
    assert len(method.times) == 3
    waits = [b - a for a, b in zip(method.times, method.times[1:], strict=False)]
    assert all(w >= 0.03 for w in waits), waits  # never sooner than the server asked
    assert method.timeouts[0] == 5.0 and method.timeouts[2] < 5.0  # one deadline for all tries


def test_a_trigger_with_an_idempotency_key_is_sent_again_and_one_without_is_not() -> None:
    method = Method(1, limited())
    keyed = rpb.TriggerRunRequest(task_id="t", idempotency_key="order-1")
    assert asyncio.run(_grpc.call_mapped(method, keyed, 5.0)) == "ok"
    method = Method(1, limited(1500))
    with pytest.raises(RateLimitedError, match="API key k1") as info:
        asyncio.run(_grpc.call_mapped(method, rpb.TriggerRunRequest(task_id="t"), 5.0))
    assert len(method.timeouts) == 1 and info.value.retry_after == 1.5


def test_no_retry_past_the_deadline_and_a_full_queue_is_never_retried() -> None:
    method = Method(5, limited(2000))
    started = time.monotonic()
    with pytest.raises(RateLimitedError):
        asyncio.run(_grpc.call_mapped(method, rpb.GetRunRequest(), 1.0))
    assert len(method.timeouts) == 1 and time.monotonic() - started < 1.0
    method = Method(5, queue_full())
    with pytest.raises(QueueFullError):
        asyncio.run(_grpc.call_mapped(method, rpb.TriggerRunRequest(idempotency_key="k"), 5.0))
    assert len(method.timeouts) == 1


def test_an_attempts_writes_are_sent_again_after_the_delay_within_the_lease() -> None:
    method = Method(2, limited(10))
    assert (
        asyncio.run(_grpc.call_with_retry(method, wpb.RecordStepRequest(), timeout=1, give_up_after=5))
        == "ok"
    )
    assert len(method.timeouts) == 3
    method = Method(5, limited(3000))
    with pytest.raises(grpc.RpcError):
        asyncio.run(_grpc.call_with_retry(method, wpb.FinishAttemptRequest(), timeout=1, give_up_after=1))
    assert len(method.timeouts) == 1


def test_the_client_retries_a_read_and_raises_for_a_plain_trigger() -> None:
    fake = FakeStub()
    get = Method(1, limited(), rpb.GetRunResponse(run=cpb.Run(id="r1", task_id="t")))
    fake.GetRun = get  # type: ignore[attr-defined]
    fake.TriggerRun = Method(1, limited())  # type: ignore[method-assign]
    client = client_with(fake)
    assert asyncio.run(client.get("r1")).id == "r1" and len(get.timeouts) == 2
    with pytest.raises(RateLimitedError):
        asyncio.run(client.trigger("t", 1))


def test_wait_goes_on_after_the_delay() -> None:
    fake = FakeStub()
    done = rpb.WaitRunResponse(run=cpb.Run(id="r1", task_id="t", status=cpb.RUN_STATUS_COMPLETED), done=True)
    fake.WaitRun = Method(2, limited(), done)  # type: ignore[attr-defined]
    run = asyncio.run(client_with(fake).wait("r1", timeout=10))
    assert run.status == RunStatus.COMPLETED


def test_a_watch_refused_by_the_stream_bound_connects_again_after_the_delay() -> None:
    fake = FakeStub()
    fake.watch_scripts = [[limited(10, "stream limit of API key k1: ...")], HISTORY]

    async def go() -> list[int]:
        return [u.event.id async for u in client_with(fake).watch("run-1")]

    assert asyncio.run(go()) == [1, 2, 3]
    assert len(fake.requests("WatchRun")) == 2


def test_the_cli_says_it_in_one_line() -> None:
    error = cli_channel.error(limited(1500))
    assert str(error) == LIMITED and "\n" not in str(error)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
