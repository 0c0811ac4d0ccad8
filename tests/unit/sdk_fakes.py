"""The one in-memory stand-in for the frontend's stubs that the SDK unit tests
give an attempt (WorkerService, RunService and WaitService methods in one
object). Every call is recorded as Call(method, request, timeout) when it
starts; while held (hold/release) calls wait in flight.

- ``refuse[method] = code``: that method answers with the status code instead
  (every time, or ``refuse_times`` times in all), with the trailing metadata
  "cairn-attempt-gone" = ``refuse_gone`` when that is set.
- ``refuse_writes[(run_id, position_or_None)] = (code, message)`` or
  ``(code, message, gone)``: that step record or finish is refused, as a raised
  error from RecordStep/FinishAttempt (with "cairn-attempt-gone" = gone) and as
  an item error in a BatchWrite's results (with WriteError.attempt_gone).
- Steps are stored as recorded: ``stored`` by (run_id, position), and a
  RecordStep answers the step with its try_errors.
- ``batch_error``: BatchWrite raises it (the whole call fails).
- ``drop_results``: BatchWrite answers that many results too few.
- ``watch_scripts``: what each WatchRun/WatchRuns call streams, one script per
  call in order: RunUpdate messages, and an exception to raise there. The call
  objects (FakeStream) are kept in ``streams`` (``cancelled`` once cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import grpc

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb


def rpc_error(code: grpc.StatusCode, details: str, gone: str | None = None) -> grpc.aio.AioRpcError:
    """A refusal as the frontend sends it; gone is the "cairn-attempt-gone" value."""
    trailing = grpc.aio.Metadata(("cairn-attempt-gone", gone)) if gone else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


def attempt_gone(name: str | None) -> int:
    """The AttemptGone value of a "cairn-attempt-gone" name ("canceled", ...)."""
    return wpb.AttemptGone.Value(f"ATTEMPT_GONE_{name.upper()}") if name else 0


class Call(NamedTuple):
    method: str
    request: Any
    timeout: float | None


_RUN_STATUS_AFTER = {
    wpb.ATTEMPT_OUTCOME_COMPLETED: cpb.RUN_STATUS_COMPLETED,
    wpb.ATTEMPT_OUTCOME_FAILED: cpb.RUN_STATUS_FAILED,
    wpb.ATTEMPT_OUTCOME_SUSPENDED: cpb.RUN_STATUS_WAITING,
}


class FakeStream:
    """A server-streaming call: yields its script's messages as the method's
    responses (WatchRunResponse / WatchRunsResponse), raising an exception found
    in it; cancel() is recorded."""

    def __init__(self, script: list[Any], response: type[Any]) -> None:
        self.script = script
        self.response = response
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def __aiter__(self) -> AsyncIterator[Any]:
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            yield self.response(updates=[item])


class FakeStub:
    """Answers as history would, from memory (see the module docstring)."""

    def __init__(
        self, refuse: dict[str, grpc.StatusCode] | None = None, refuse_times: int | None = None
    ) -> None:
        self.calls: list[Call] = []
        self.refuse = refuse or {}
        self.refuse_times = refuse_times
        self.refused = 0
        self.refuse_gone: str | None = None
        self.refuse_writes: dict[tuple[str, int | None], tuple[Any, ...]] = {}
        self.stored: dict[tuple[str, int], cpb.Step] = {}
        self.batch_error: BaseException | None = None
        self.drop_results = 0
        self.watch_scripts: list[list[Any]] = []
        self.streams: list[FakeStream] = []
        self.marker = "the wrapped stub's own attribute"
        self._open = asyncio.Event()
        self._open.set()

    # Holding calls in flight.
    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _enter(self, method: str, request: Any, timeout: float | None) -> None:
        self.calls.append(Call(method, request, timeout))
        await self._open.wait()
        code = self.refuse.get(method)
        if code is not None and (self.refuse_times is None or self.refused < self.refuse_times):
            self.refused += 1
            raise rpc_error(code, f"{method} refused", self.refuse_gone)

    @staticmethod
    def _key(request: Any) -> tuple[str, int | None]:
        if isinstance(request, wpb.RecordStepRequest):
            return request.run_id, request.position
        return request.run_id, None

    def _step(self, request: wpb.RecordStepRequest) -> wpb.RecordStepResponse:
        step = cpb.Step(
            position=request.position,
            name=request.name,
            status=request.status,
            attempt=request.attempt,
            tries=request.tries,
            output=request.output,
            error=request.error,
            try_errors=request.try_errors,
        )
        self.stored[(request.run_id, request.position)] = step
        return wpb.RecordStepResponse(step=step)

    def _refusal(self, request: Any) -> grpc.aio.AioRpcError | None:
        refusal = self.refuse_writes.get(self._key(request))
        return None if refusal is None else rpc_error(*refusal)

    @staticmethod
    def _finish(request: wpb.FinishAttemptRequest) -> wpb.FinishAttemptResponse:
        return wpb.FinishAttemptResponse(run_status=_RUN_STATUS_AFTER.get(request.outcome, 0))

    # WorkerService
    async def RecordStep(self, request: wpb.RecordStepRequest, timeout: float | None = None) -> Any:
        await self._enter("RecordStep", request, timeout)
        refusal = self._refusal(request)
        if refusal is not None:
            raise refusal
        return self._step(request)

    async def FinishAttempt(self, request: wpb.FinishAttemptRequest, timeout: float | None = None) -> Any:
        await self._enter("FinishAttempt", request, timeout)
        refusal = self._refusal(request)
        if refusal is not None:
            raise refusal
        return self._finish(request)

    async def BatchWrite(self, request: wpb.BatchWriteRequest, timeout: float | None = None) -> Any:
        await self._enter("BatchWrite", request, timeout)
        if self.batch_error is not None:
            raise self.batch_error
        response = wpb.BatchWriteResponse()
        for w in request.writes[: len(request.writes) - self.drop_results]:
            item = getattr(w, w.WhichOneof("write"))
            result = response.results.add()
            if self._key(item) in self.refuse_writes:
                code, message, *gone = self.refuse_writes[self._key(item)]
                result.error.code = code.value[0]
                result.error.message = message
                result.error.attempt_gone = attempt_gone(gone[0] if gone else None)
            elif isinstance(item, wpb.RecordStepRequest):
                result.record_step.CopyFrom(self._step(item))
            elif isinstance(item, wpb.AppendRunOutputRequest):
                result.append_run_output.CopyFrom(wpb.AppendRunOutputResponse())
            else:
                result.finish_attempt.CopyFrom(self._finish(item))
        return response

    async def AppendRunOutput(self, request: Any, timeout: float | None = None) -> Any:
        await self._enter("AppendRunOutput", request, timeout)
        return wpb.AppendRunOutputResponse()

    async def Heartbeat(self, request: Any, timeout: float | None = None) -> Any:
        await self._enter("Heartbeat", request, timeout)
        return wpb.HeartbeatResponse()

    async def UpdateRunMetadata(self, request: Any, timeout: float | None = None) -> Any:
        await self._enter("UpdateRunMetadata", request, timeout)
        return wpb.UpdateRunMetadataResponse(metadata=request.metadata)

    # RunService and WaitService, for child runs and wait tokens
    async def TriggerRun(self, request: Any, timeout: float | None = None) -> Any:
        await self._enter("TriggerRun", request, timeout)
        run = cpb.Run(id=f"child-{len(self.requests('TriggerRun'))}", task_id=request.task_id)
        return rpb.TriggerRunResponse(run=run)

    async def CreateWaitToken(self, request: Any, timeout: float | None = None) -> Any:
        await self._enter("CreateWaitToken", request, timeout)
        token = wspb.WaitToken(id="tok-1", run_id=request.run_id)
        if request.HasField("timeout"):
            token.timeout_at.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
        return wspb.CreateWaitTokenResponse(token=token)

    # RunService streams
    def _stream(self, method: str, request: Any, timeout: float | None, response: type[Any]) -> FakeStream:
        self.calls.append(Call(method, request, timeout))
        stream = FakeStream(self.watch_scripts.pop(0) if self.watch_scripts else [], response)
        self.streams.append(stream)
        return stream

    def WatchRun(self, request: Any, timeout: float | None = None) -> FakeStream:
        return self._stream("WatchRun", request, timeout, rpb.WatchRunResponse)

    def WatchRuns(self, request: Any, timeout: float | None = None) -> FakeStream:
        return self._stream("WatchRuns", request, timeout, rpb.WatchRunsResponse)

    # Reading what was sent.
    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def requests(self, method: str) -> list[Any]:
        return [c.request for c in self.calls if c.method == method]

    def records(self) -> list[wpb.RecordStepRequest]:
        return self.requests("RecordStep")

    def batches(self) -> list[wpb.BatchWriteRequest]:
        return self.requests("BatchWrite")
