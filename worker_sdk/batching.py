"""Group commit on the worker's side: the step records and attempt ends that a
worker's concurrent attempts make while one of its writes is in flight are sent
together, as one BatchWrite call, when that write returns. A write made while
nothing is in flight goes at once as its own call, so a quiet worker waits for
nothing; a busy one makes one call (and history one commit) per batch instead
of one per write."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc

from cairn.v1 import worker_service_pb2

MAX_BATCH = 256
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_SINGLE = {"record_step": "RecordStep", "finish_attempt": "FinishAttempt"}


def write_error(code: int, message: str) -> grpc.aio.AioRpcError:
    """A refused write of a batch, raised as the single call would have failed."""
    return grpc.aio.AioRpcError(_CODES.get(code, grpc.StatusCode.UNKNOWN), grpc.aio.Metadata(),
                                grpc.aio.Metadata(), details=message)


@dataclass
class _Write:
    kind: str  # "record_step" or "finish_attempt"
    request: Any
    timeout: float | None
    future: asyncio.Future[Any]


class BatchingStub:
    """A WorkerService stub whose RecordStep and FinishAttempt coalesce; every
    other method is the wrapped stub's. Callers see the same responses and
    errors as from the plain stub, one per write."""

    def __init__(self, stub: Any, max_batch: int = MAX_BATCH) -> None:
        self._stub = stub
        self._max_batch = max_batch
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    async def RecordStep(self, request: worker_service_pb2.RecordStepRequest,
                         timeout: float | None = None) -> worker_service_pb2.RecordStepResponse:
        return await self._submit("record_step", request, timeout)

    async def FinishAttempt(self, request: worker_service_pb2.FinishAttemptRequest,
                            timeout: float | None = None) -> worker_service_pb2.FinishAttemptResponse:
        return await self._submit("finish_attempt", request, timeout)

    async def _submit(self, kind: str, request: Any, timeout: float | None) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(kind, request, timeout, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Sends what is pending, one call at a time, until nothing is."""
        try:
            while self._pending:
                batch = [w for w in self._pending[:self._max_batch] if not w.future.done()]
                del self._pending[:self._max_batch]
                if len(batch) == 1:
                    await self._send_one(batch[0])
                elif batch:
                    await self._send_many(batch)
        finally:
            self._flusher = None

    async def _send_one(self, write: _Write) -> None:
        try:
            result = await getattr(self._stub, _SINGLE[write.kind])(write.request, timeout=write.timeout)
        except Exception as exc:  # the caller's own call failed: it gets the error
            _settle(write, exc=exc)
        else:
            _settle(write, result)

    async def _send_many(self, batch: list[_Write]) -> None:
        timeouts = [w.timeout for w in batch if w.timeout is not None]
        try:
            request = worker_service_pb2.BatchWriteRequest(namespace=batch[0].request.namespace)
            for w in batch:
                getattr(request.writes.add(), w.kind).CopyFrom(w.request)
            response = await self._stub.BatchWrite(request, timeout=max(timeouts) if timeouts else None)
        except Exception as exc:  # the whole call failed: every write did, each retries alone
            for w in batch:
                _settle(w, exc=exc)
            return
        if len(response.results) != len(batch):
            exc = write_error(grpc.StatusCode.INTERNAL.value[0], f"BatchWrite answered "
                              f"{len(response.results)} results for {len(batch)} writes")
            for w in batch:
                _settle(w, exc=exc)
            return
        for w, result in zip(batch, response.results):
            which = result.WhichOneof("result")
            if which == "error":
                _settle(w, exc=write_error(result.error.code, result.error.message))
            else:
                _settle(w, getattr(result, which))


def _settle(write: _Write, result: Any = None, exc: BaseException | None = None) -> None:
    if write.future.done():  # its caller gave up (canceled)
        return
    if exc is not None:
        write.future.set_exception(exc)
    else:
        write.future.set_result(result)
