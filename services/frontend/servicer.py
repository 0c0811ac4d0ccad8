"""The public gRPC API: validates every request, fills in the namespace, and
routes it to history (run state) or matching (queues and workers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.limits import DEFAULT_POLL_WAIT
from cairn.statuses import RUN_STATUS_NAMES, TERMINAL_RUN_STATUSES
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc as qgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import schedule_service_pb2_grpc as sgrpc
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import wait_service_pb2_grpc as wsgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from services.common.errors import rpc, unavailable
from services.frontend import validation as check
from services.frontend.run_watch import RunWatcher
from services.frontend.triggers import Triggers

T = TypeVar("T")
CALL_TIMEOUT = 15.0
DEFAULT_WAIT_RUN = 30.0


class Backend:
    """The stubs of the internal services, with their addresses for error messages."""

    def __init__(
        self,
        history: hgrpc.HistoryServiceStub,
        history_address: str,
        matching: mgrpc.MatchingServiceStub,
        matching_address: str,
    ) -> None:
        self.history = history
        self.matching = matching
        self._names = {
            id(history): f"history service at {history_address}",
            id(matching): f"matching service at {matching_address}",
        }

    async def route(
        self,
        stub: Any,
        method: str,
        request: Any,
        validate: Callable[[Any], None],
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        """Fills in the namespace, validates, and forwards the request unchanged."""
        _with_namespace(request)
        validate(request)
        return await self.call(stub, method, request, timeout)

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
        self.triggers = Triggers(backend, CALL_TIMEOUT)

    @rpc
    async def TriggerRun(
        self, request: rpb.TriggerRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.TriggerRunResponse:
        check.trigger(_with_namespace(request))
        return await self.triggers.trigger(request)

    @rpc
    async def BatchTriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.BatchTriggerRunsResponse:
        return await self.b.route(self.b.history, "BatchTriggerRuns", request, check.batch_trigger)

    @rpc
    async def GetRun(
        self, request: rpb.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetRunResponse:
        return await self.b.route(self.b.history, "GetRun", request, lambda r: check.run_id(r.run_id))

    @rpc
    async def ListRuns(
        self, request: rpb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListRunsResponse:
        return await self.b.route(self.b.history, "ListRuns", request, check.list_runs)

    @rpc
    async def CancelRun(
        self, request: rpb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.CancelRunResponse:
        def validate(r: rpb.CancelRunRequest) -> None:
            check.run_id(r.run_id)
            check.text("reason", r.reason, 1000)

        return await self.b.route(self.b.history, "CancelRun", request, validate)

    @rpc
    async def WaitRun(
        self, request: rpb.WaitRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.WaitRunResponse:
        """Re-reads the run when NATS announces that it ended, and at the sweep
        interval in case an announcement was lost."""
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
        self._route = backend.route

    @rpc
    async def RegisterWorker(
        self, request: wpb.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RegisterWorkerResponse:
        """Registers with matching, then lets history align the declared schedules."""
        response = await self._route(self.b.matching, "RegisterWorker", request, check.register)
        await self.b.call(
            self.b.history,
            "SyncDeclaredSchedules",
            hpb.SyncDeclaredSchedulesRequest(namespace=request.namespace, tasks=request.tasks),
        )
        return response

    @rpc
    async def PollAttempt(
        self, request: wpb.PollAttemptRequest, context: grpc.aio.ServicerContext
    ) -> wpb.PollAttemptResponse:
        wait = check.wait_seconds("wait", request, DEFAULT_POLL_WAIT)
        return await self._route(
            self.b.matching, "PollAttempt", request, check.poll, timeout=wait + CALL_TIMEOUT
        )

    @rpc
    async def Heartbeat(
        self, request: wpb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> wpb.HeartbeatResponse:
        return await self._route(self.b.history, "Heartbeat", request, check.attempt_ref)

    @rpc
    async def RecordStep(
        self, request: wpb.RecordStepRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RecordStepResponse:
        return await self._route(self.b.history, "RecordStep", request, check.record_step)

    @rpc
    async def FinishAttempt(
        self, request: wpb.FinishAttemptRequest, context: grpc.aio.ServicerContext
    ) -> wpb.FinishAttemptResponse:
        return await self._route(self.b.history, "FinishAttempt", request, check.finish)

    @rpc
    async def UpdateRunMetadata(
        self, request: wpb.UpdateRunMetadataRequest, context: grpc.aio.ServicerContext
    ) -> wpb.UpdateRunMetadataResponse:
        return await self._route(self.b.history, "UpdateRunMetadata", request, check.update_metadata)

    @rpc
    async def BatchWrite(
        self, request: wpb.BatchWriteRequest, context: grpc.aio.ServicerContext
    ) -> wpb.BatchWriteResponse:
        return await self._route(self.b.history, "BatchWrite", request, check.batch_write)


class WaitServicer(wsgrpc.WaitServiceServicer):
    """cairn.v1.WaitService: events and wait tokens."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    @rpc
    async def SendEvent(
        self, request: wspb.SendEventRequest, context: grpc.aio.ServicerContext
    ) -> wspb.SendEventResponse:
        return await self.b.route(self.b.history, "SendEvent", request, check.send_event)

    @rpc
    async def CreateWaitToken(
        self, request: wspb.CreateWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.CreateWaitTokenResponse:
        return await self.b.route(self.b.history, "CreateWaitToken", request, check.create_token)

    @rpc
    async def CompleteWaitToken(
        self, request: wspb.CompleteWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.CompleteWaitTokenResponse:
        return await self.b.route(self.b.history, "CompleteWaitToken", request, check.complete_token)

    @rpc
    async def GetWaitToken(
        self, request: wspb.GetWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.GetWaitTokenResponse:
        return await self.b.route(self.b.history, "GetWaitToken", request, check.token_ref)


class ScheduleServicer(sgrpc.ScheduleServiceServicer):
    """cairn.v1.ScheduleService."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    @rpc
    async def CreateSchedule(
        self, request: spb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.CreateScheduleResponse:
        return await self.b.route(self.b.history, "CreateSchedule", request, check.create_schedule)

    @rpc
    async def ListSchedules(
        self, request: spb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListSchedulesResponse:
        return await self.b.route(self.b.history, "ListSchedules", request, check.list_schedules)

    @rpc
    async def PauseSchedule(
        self, request: spb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.PauseScheduleResponse:
        return await self.b.route(self.b.history, "PauseSchedule", request, check.schedule_ref)

    @rpc
    async def ResumeSchedule(
        self, request: spb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.ResumeScheduleResponse:
        return await self.b.route(self.b.history, "ResumeSchedule", request, check.schedule_ref)

    @rpc
    async def DeleteSchedule(
        self, request: spb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.DeleteScheduleResponse:
        return await self.b.route(self.b.history, "DeleteSchedule", request, check.schedule_ref)


class QueueServicer(qgrpc.QueueServiceServicer):
    """cairn.v1.QueueService, served by matching."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    @rpc
    async def UpdateQueue(
        self, request: qpb.UpdateQueueRequest, context: grpc.aio.ServicerContext
    ) -> qpb.UpdateQueueResponse:
        return await self.b.route(self.b.matching, "UpdateQueue", request, check.update_queue)

    @rpc
    async def ListQueues(
        self, request: qpb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> qpb.ListQueuesResponse:
        return await self.b.route(self.b.matching, "ListQueues", request, lambda r: None)

    @rpc
    async def PauseQueue(
        self, request: qpb.PauseQueueRequest, context: grpc.aio.ServicerContext
    ) -> qpb.PauseQueueResponse:
        return await self.b.route(self.b.matching, "PauseQueue", request, check.queue_ref)

    @rpc
    async def ResumeQueue(
        self, request: qpb.ResumeQueueRequest, context: grpc.aio.ServicerContext
    ) -> qpb.ResumeQueueResponse:
        return await self.b.route(self.b.matching, "ResumeQueue", request, check.queue_ref)
