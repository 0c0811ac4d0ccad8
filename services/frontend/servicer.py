"""The public gRPC API: validates every request, fills in the namespace, and
routes it to history (run state) or matching (queues and workers)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.statuses import RUN_STATUS_NAMES, TERMINAL_RUN_STATUSES
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from services.common.errors import rpc, unavailable
from services.frontend import validation as check
from services.frontend.run_watch import RunWatcher

T = TypeVar("T")
CALL_TIMEOUT = 15.0
DEFAULT_WAIT_RUN = 30.0


class Backend:
    """The stubs of the internal services, with their addresses for error messages."""

    def __init__(self, history: hgrpc.HistoryServiceStub, history_address: str,
                 matching: mgrpc.MatchingServiceStub, matching_address: str) -> None:
        self.history = history
        self.matching = matching
        self._names = {id(history): f"history service at {history_address}",
                       id(matching): f"matching service at {matching_address}"}

    async def call(self, stub: Any, method: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """Calls stub.method; a downed service becomes UNAVAILABLE naming it."""
        try:
            return await getattr(stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unavailable(f"{self._names[id(stub)]} unavailable: {exc.details()}") from None
            raise


def _with_namespace(request: T) -> T:
    request.namespace = check.namespace(request.namespace)  # type: ignore[attr-defined]
    return request


class RunServicer(rgrpc.RunServiceServicer):
    """cairn.v1.RunService."""

    def __init__(self, backend: Backend, watcher: RunWatcher, sweep_seconds: float) -> None:
        self.b = backend
        self.watcher = watcher
        self.sweep_seconds = sweep_seconds

    @rpc
    async def TriggerRun(self, request: rpb.TriggerRunRequest, context: grpc.aio.ServicerContext
                         ) -> rpb.TriggerRunResponse:
        _with_namespace(request)
        check.trigger(request)
        return await self.b.call(self.b.history, "TriggerRun", request)

    @rpc
    async def GetRun(self, request: rpb.GetRunRequest, context: grpc.aio.ServicerContext
                     ) -> rpb.GetRunResponse:
        _with_namespace(request)
        check.run_id(request.run_id)
        return await self.b.call(self.b.history, "GetRun", request)

    @rpc
    async def ListRuns(self, request: rpb.ListRunsRequest, context: grpc.aio.ServicerContext
                       ) -> rpb.ListRunsResponse:
        _with_namespace(request)
        check.list_runs(request)
        return await self.b.call(self.b.history, "ListRuns", request)

    @rpc
    async def CancelRun(self, request: rpb.CancelRunRequest, context: grpc.aio.ServicerContext
                        ) -> rpb.CancelRunResponse:
        _with_namespace(request)
        check.run_id(request.run_id)
        check.text("reason", request.reason, 1000)
        return await self.b.call(self.b.history, "CancelRun", request)

    @rpc
    async def WaitRun(self, request: rpb.WaitRunRequest, context: grpc.aio.ServicerContext
                      ) -> rpb.WaitRunResponse:
        """Re-reads the run whenever NATS announces a change of it, and at the
        sweep interval in case an announcement was lost."""
        _with_namespace(request)
        check.run_id(request.run_id)
        deadline = time.monotonic() + check.wait_seconds("timeout", request, DEFAULT_WAIT_RUN)
        get = rpb.GetRunRequest(namespace=request.namespace, run_id=request.run_id)
        while True:
            event = self.watcher.watch(request.run_id)
            try:
                run = (await self.b.call(self.b.history, "GetRun", get)).run
                done = RUN_STATUS_NAMES.get(run.status) in TERMINAL_RUN_STATUSES
                remaining = deadline - time.monotonic()
                if done or remaining <= 0:
                    return rpb.WaitRunResponse(run=run, done=done)
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, self.sweep_seconds))
                except TimeoutError:
                    pass
            finally:
                self.watcher.unwatch(request.run_id, event)


class WorkerServicer(wgrpc.WorkerServiceServicer):
    """cairn.v1.WorkerService."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    async def _route(self, stub: Any, method: str, request: Any,
                     validate: Callable[[Any], None], timeout: float = CALL_TIMEOUT) -> Any:
        _with_namespace(request)
        validate(request)
        return await self.b.call(stub, method, request, timeout)

    @rpc
    async def RegisterWorker(self, request: wpb.RegisterWorkerRequest,
                             context: grpc.aio.ServicerContext) -> wpb.RegisterWorkerResponse:
        return await self._route(self.b.matching, "RegisterWorker", request, check.register)

    @rpc
    async def PollAttempt(self, request: wpb.PollAttemptRequest,
                          context: grpc.aio.ServicerContext) -> wpb.PollAttemptResponse:
        wait = check.wait_seconds("wait", request, 20.0)
        return await self._route(self.b.matching, "PollAttempt", request, check.poll,
                                 timeout=wait + CALL_TIMEOUT)

    @rpc
    async def Heartbeat(self, request: wpb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> wpb.HeartbeatResponse:
        return await self._route(self.b.history, "Heartbeat", request, check.attempt_ref)

    @rpc
    async def RecordStep(self, request: wpb.RecordStepRequest,
                         context: grpc.aio.ServicerContext) -> wpb.RecordStepResponse:
        return await self._route(self.b.history, "RecordStep", request, check.record_step)

    @rpc
    async def FinishAttempt(self, request: wpb.FinishAttemptRequest,
                            context: grpc.aio.ServicerContext) -> wpb.FinishAttemptResponse:
        return await self._route(self.b.history, "FinishAttempt", request, check.finish)
