"""The frontend's calls to history and matching across their restarts
(services/frontend/backend.py): a call waits for a service that is down and
is sent once it is back (any call: it was never sent before); a call that met
UNAVAILABLE on its way is sent again only when repeating it is safe
(repeatable()); a service that stays down is UNAVAILABLE naming it and why,
within the retry budget or the caller's deadline, whichever ends first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import pytest

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.embedded import free_port
from services.common.errors import ServiceError
from services.frontend.backend import DEADLINE, HISTORY, MATCHING, REPEATABLE, Backend, repeatable


class FlakyHistory(hgrpc.HistoryServiceServicer):
    """Answers GetRun and TriggerRun; the first `fail` calls of each end UNAVAILABLE."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[str] = []

    async def _answer(self, method: str, context: Any) -> None:
        self.calls.append(method)
        if self.calls.count(method) <= self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset (a test's)")

    async def GetRun(self, request: Any, context: Any) -> Any:
        await self._answer("GetRun", context)
        return rpb.GetRunResponse(run=cpb.Run(id=request.run_id))

    async def TriggerRun(self, request: Any, context: Any) -> Any:
        await self._answer("TriggerRun", context)
        return rpb.TriggerRunResponse(run=cpb.Run(id="r1"))


async def _serve(servicer: FlakyHistory, port: int) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    hgrpc.add_HistoryServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server


def _backend(port: int, retry_seconds: float = 5.0) -> Backend:
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]
    history = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    matching = grpc.aio.insecure_channel("127.0.0.1:1", options=options)
    return Backend(history, f"127.0.0.1:{port}", matching, "127.0.0.1:1", retry_seconds=retry_seconds)


def _run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), 30)

    asyncio.run(bounded())


def test_a_call_waits_for_a_service_that_is_starting_and_is_sent_once() -> None:
    async def body() -> None:
        port = free_port()
        backend = _backend(port)
        history = FlakyHistory()

        async def start_late() -> grpc.aio.Server:
            await asyncio.sleep(0.7)
            return await _serve(history, port)

        starting = asyncio.create_task(start_late())
        t0 = time.monotonic()
        # A trigger without an idempotency key is not repeatable, and still
        # waits: it is not sent before history is there.
        answer = await backend.call(HISTORY, "TriggerRun", rpb.TriggerRunRequest(task_id="t"))
        assert answer.run.id == "r1"
        assert time.monotonic() - t0 >= 0.6
        assert history.calls == ["TriggerRun"]
        await (await starting).stop(None)

    _run(body)


def test_a_service_that_stays_down_is_unavailable_naming_it_and_why() -> None:
    async def body() -> None:
        port = free_port()
        backend = _backend(port, retry_seconds=0.5)
        t0 = time.monotonic()
        with pytest.raises(ServiceError) as down:
            await backend.call(HISTORY, "GetRun", rpb.GetRunRequest(run_id="x"))
        took = time.monotonic() - t0
        assert down.value.code == grpc.StatusCode.UNAVAILABLE
        assert down.value.message == (
            f"history service at 127.0.0.1:{port} is unavailable: "
            f"nothing listens on 127.0.0.1:{port} (connection refused)"
        )
        assert 0.4 <= took < 3, took

        # The caller's deadline ends the wait first, leaving time to answer.
        backend = _backend(port, retry_seconds=10)
        DEADLINE.set(time.monotonic() + 0.6)
        t0 = time.monotonic()
        with pytest.raises(ServiceError) as down:
            await backend.call(HISTORY, "GetRun", rpb.GetRunRequest(run_id="x"))
        # Ended by the caller's deadline (0.6 s), not by the 10 s of retries: the
        # bound leaves a loaded machine 4 s of slack and is still well below 10 s.
        assert time.monotonic() - t0 < 0.6 + 4.0
        assert "history service at" in down.value.message

    _run(body)


def test_unavailable_on_the_way_is_sent_again_only_when_that_is_safe() -> None:
    async def body() -> None:
        port = free_port()
        history = FlakyHistory(fail=2)
        server = await _serve(history, port)
        backend = _backend(port)
        try:
            # A read: sent again until it is answered.
            answer = await backend.call(HISTORY, "GetRun", rpb.GetRunRequest(run_id="x"))
            assert answer.run.id == "x"
            assert history.calls == ["GetRun"] * 3
            # A trigger without a key or request id may have made its run: sent
            # once, UNAVAILABLE naming history.
            with pytest.raises(ServiceError) as refused:
                await backend.call(HISTORY, "TriggerRun", rpb.TriggerRunRequest(task_id="t"))
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert refused.value.message.startswith(f"history service at 127.0.0.1:{port} is unavailable: ")
            assert history.calls.count("TriggerRun") == 1
            # With a request id (or an idempotency key), history answers the run
            # the first one made: sent again.
            identified = rpb.TriggerRunRequest(task_id="t", request_id="r-1")
            assert (await backend.call(HISTORY, "TriggerRun", identified)).run.id == "r1"
            assert history.calls.count("TriggerRun") == 3
        finally:
            await server.stop(None)

    _run(body)


def test_which_calls_are_repeatable() -> None:
    assert repeatable(HISTORY, "GetRun", rpb.GetRunRequest())
    assert repeatable(HISTORY, "Heartbeat", wpb.HeartbeatRequest())
    assert repeatable(MATCHING, "PollAttempt", wpb.PollAttemptRequest())
    assert not repeatable(HISTORY, "TriggerRun", rpb.TriggerRunRequest(task_id="t"))
    assert repeatable(HISTORY, "TriggerRun", rpb.TriggerRunRequest(task_id="t", idempotency_key="k"))
    assert repeatable(HISTORY, "TriggerRun", rpb.TriggerRunRequest(task_id="t", request_id="r-1"))
    batch = rpb.BatchTriggerRunsRequest(
        runs=[rpb.TriggerRunRequest(idempotency_key="a"), rpb.TriggerRunRequest()]
    )
    assert not repeatable(HISTORY, "TriggerRuns", batch)
    batch.runs[1].request_id = "r-2"
    assert repeatable(HISTORY, "TriggerRuns", batch)
    assert repeatable(HISTORY, "BatchTriggerRuns", batch)
    assert not repeatable(HISTORY, "CreateWaitToken", wspb.CreateWaitTokenRequest())
    assert repeatable(HISTORY, "CreateWaitToken", wspb.CreateWaitTokenRequest(idempotency_key="k"))
    steps = wpb.BatchWriteRequest(writes=[wpb.AttemptWrite(record_step=wpb.RecordStepRequest())])
    assert repeatable(HISTORY, "BatchWrite", steps)
    steps.writes.add(append_run_output=wpb.AppendRunOutputRequest())
    assert not repeatable(HISTORY, "BatchWrite", steps)  # log lines would be appended twice
    for method in ("ReplayRun", "SendEvent", "CompleteWaitToken", "CreateSchedule", "DeleteSchedule"):
        assert method not in REPEATABLE[HISTORY]
    assert "CreateKey" not in REPEATABLE[MATCHING]
