"""Group commit on the worker's side: the step records and attempt ends that a
worker's concurrent attempts make while one of its writes is in flight are sent
together, as one BatchWrite call, when that write returns (cairn.coalesce). A
write made while nothing is in flight goes at once as its own call, so a quiet
worker waits for nothing; a busy one makes one call (and history one commit)
per batch instead of one per write."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from cairn import status_codes
from cairn.coalesce import Coalescer
from cairn.limits import COALESCED_BATCH
from cairn.v1 import worker_service_pb2
from worker_sdk._grpc import ATTEMPT_GONE_KEY

_SINGLE = {
    "record_step": "RecordStep",
    "finish_attempt": "FinishAttempt",
    "append_run_output": "AppendRunOutput",
}
Write = tuple[str, Any]  # (the AttemptWrite kind, the request)


def attempt_gone_name(value: int) -> str:
    """An AttemptGone value as its trailing-metadata name ("canceled", ...);
    empty for ATTEMPT_GONE_UNSPECIFIED."""
    if not value:
        return ""
    try:
        name = worker_service_pb2.AttemptGone.Name(value)
    except ValueError:
        return str(value)  # newer than this SDK
    return name.removeprefix("ATTEMPT_GONE_").lower()


def write_error(code: int, message: str, attempt_gone: int = 0) -> grpc.aio.AioRpcError:
    """A refused write of a batch, raised as the single call would have failed:
    with WriteError.attempt_gone as the trailing metadata "cairn-attempt-gone"."""
    gone = attempt_gone_name(attempt_gone)
    trailing = grpc.aio.Metadata((ATTEMPT_GONE_KEY, gone)) if gone else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(status_codes.from_int(code), grpc.aio.Metadata(), trailing, details=message)


class BatchingStub:
    """A WorkerService stub whose RecordStep and FinishAttempt coalesce; every
    other method is the wrapped stub's. Callers see the same responses and
    errors as from the plain stub, one per write."""

    def __init__(self, stub: Any, max_batch: int = COALESCED_BATCH) -> None:
        self._stub = stub
        self._writes: Coalescer[Write, Any] = Coalescer(self._send_one, self._send_many, max_batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    async def RecordStep(
        self, request: worker_service_pb2.RecordStepRequest, timeout: float | None = None
    ) -> worker_service_pb2.RecordStepResponse:
        response: worker_service_pb2.RecordStepResponse = await self._writes.submit(
            ("record_step", request), timeout
        )
        return response

    async def FinishAttempt(
        self, request: worker_service_pb2.FinishAttemptRequest, timeout: float | None = None
    ) -> worker_service_pb2.FinishAttemptResponse:
        response: worker_service_pb2.FinishAttemptResponse = await self._writes.submit(
            ("finish_attempt", request), timeout
        )
        return response

    def enqueue_output(
        self, request: worker_service_pb2.AppendRunOutputRequest, timeout: float | None = None
    ) -> asyncio.Future[worker_service_pb2.AppendRunOutputResponse]:
        """Queues log lines and chunks behind the writes queued before them (so
        the run's log keeps their order) without waiting for the answer."""
        return self._writes.enqueue(("append_run_output", request), timeout)

    async def _send_one(self, write: Write, timeout: float | None) -> Any:
        kind, request = write
        return await getattr(self._stub, _SINGLE[kind])(request, timeout=timeout)

    async def _send_many(self, writes: list[Write], timeout: float | None) -> list[Any]:
        request = worker_service_pb2.BatchWriteRequest(namespace=writes[0][1].namespace)
        for kind, item in writes:
            getattr(request.writes.add(), kind).CopyFrom(item)
        response = await self._stub.BatchWrite(request, timeout=timeout)
        if len(response.results) != len(writes):
            raise write_error(
                status_codes.to_int(grpc.StatusCode.INTERNAL),
                f"BatchWrite answered {len(response.results)} results for {len(writes)} writes",
            )
        results: list[Any] = []
        for result in response.results:
            which = result.WhichOneof("result")
            results.append(
                write_error(result.error.code, result.error.message, result.error.attempt_gone)
                if which == "error"
                else getattr(result, which)
            )
        return results
