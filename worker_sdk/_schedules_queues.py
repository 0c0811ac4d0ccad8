"""The AsyncClient's calls on schedules and queues (SchedulesAndQueues, a base
class of AsyncClient, kept here so that each module stays short), and what
both modules need to name a task."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeAlias, TypeVar

import grpc

from cairn.v1 import (
    queue_service_pb2,
    queue_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
)
from worker_sdk import _convert, _requests, _validate
from worker_sdk._grpc import call_mapped, code_of
from worker_sdk._policies import Queue
from worker_sdk._task import Task
from worker_sdk._types import Schedule, WorkerInfo
from worker_sdk.errors import ArgumentTypeError

R = TypeVar("R")
AnyTask: TypeAlias = Task[Any, Any]


def _task_id(task: str | AnyTask) -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, str) and task:
        return task
    raise ArgumentTypeError(f"task must be a task id string or a Task, got {task!r}")


async def _deleted(exc: grpc.RpcError) -> schedule_service_pb2.DeleteScheduleResponse | None:
    """A deletion sent again, whose first sending had landed, finds no schedule:
    it is deleted."""
    return (
        schedule_service_pb2.DeleteScheduleResponse() if code_of(exc) == grpc.StatusCode.NOT_FOUND else None
    )


class SchedulesAndQueues:
    """Schedules and queues of the client's namespace, and how AsyncClient
    makes a call (_call); AsyncClient gives the address, namespace, deadline
    of a call and the stubs."""

    address: str
    namespace: str
    rpc_timeout: float

    async def _call(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        repeated: Callable[[grpc.RpcError], Awaitable[R | None]] | None = None,
    ) -> R:
        """method(request) within rpc_timeout, sent again after UNAVAILABLE
        when that is safe (_grpc.call_mapped)."""
        return await call_mapped(method, request, self.rpc_timeout, frontend=self.address, repeated=repeated)

    def _schedules(self) -> schedule_service_pb2_grpc.ScheduleServiceStub:
        raise NotImplementedError

    def _queues(self) -> queue_service_pb2_grpc.QueueServiceStub:
        raise NotImplementedError

    # ---- schedules ----

    async def create_schedule(
        self,
        schedule_id: str,
        task: str | AnyTask,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        deduplication_key: str | None = None,
    ) -> Schedule:
        """Creates a schedule that triggers task with payload on a cron expression (5
        fields, or 6 with seconds first) read in timezone. AlreadyExistsError when the
        id is taken."""
        task_id = _task_id(task)
        request = schedule_service_pb2.CreateScheduleRequest(
            namespace=self.namespace,
            schedule_id=schedule_id,
            task_id=task_id,
            cron=cron,
            timezone=timezone or "",
            payload=_requests.encode_payload(f"payload for schedule '{schedule_id}'", payload),
            deduplication_key=deduplication_key or "",
        )
        response = await self._call(self._schedules().CreateSchedule, request)
        return _convert.schedule(response.schedule)

    async def list_schedules(self, task: str | AnyTask | None = None) -> builtins.list[Schedule]:
        """The namespace's schedules (declared with tasks and created), by id."""
        request = schedule_service_pb2.ListSchedulesRequest(
            namespace=self.namespace, task_id=_task_id(task) if task is not None else ""
        )
        response = await self._call(self._schedules().ListSchedules, request)
        return [_convert.schedule(s) for s in response.schedules]

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stops a schedule from firing until it is resumed."""
        request = schedule_service_pb2.PauseScheduleRequest(namespace=self.namespace, schedule_id=schedule_id)
        response = await self._call(self._schedules().PauseSchedule, request)
        return _convert.schedule(response.schedule)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Lets a paused schedule fire again, from its next tick."""
        request = schedule_service_pb2.ResumeScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        response = await self._call(self._schedules().ResumeSchedule, request)
        return _convert.schedule(response.schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Deletes a schedule. NotFoundError when unknown."""
        request = schedule_service_pb2.DeleteScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        await self._call(self._schedules().DeleteSchedule, request, _deleted)

    # ---- queues ----

    async def update_queue(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: tuple[int, timedelta | float] | None = None,
        max_depth: int | None = None,
    ) -> Queue:
        """Creates the queue or changes its settings; an argument left None keeps
        its value. concurrency_limit: at most this many runs execute at once (0
        removes the limit); rate_limit: (limit, period), at most limit attempts
        start per period (timedelta or seconds), (0, 0) removes it; max_depth:
        triggers beyond this many queued runs fail with QueueFullError (0 removes
        it). With a concurrency key on runs, the concurrency and rate limits apply
        per key. From then on a task's declaration no longer changes these settings
        (the queue is "managed")."""
        name = _validate.name("queue name", name)
        request = queue_service_pb2.UpdateQueueRequest(namespace=self.namespace, name=name)
        if concurrency_limit is not None:
            request.concurrency_limit = _requests.queue_limit(
                f"queue {name!r}: concurrency_limit", concurrency_limit
            )
        if rate_limit is not None:
            request.rate_limit.CopyFrom(_requests.rate_limit(name, rate_limit))
        if max_depth is not None:
            request.max_depth = _requests.queue_limit(f"queue {name!r}: max_depth", max_depth)
        response = await self._call(self._queues().UpdateQueue, request)
        return _convert.queue(response.queue)

    async def list_queues(self) -> builtins.list[Queue]:
        """The namespace's queues, by name, with their settings, how many runs are
        queued (depth) and how many are executing (running)."""
        request = queue_service_pb2.ListQueuesRequest(namespace=self.namespace)
        response = await self._call(self._queues().ListQueues, request)
        return [_convert.queue(q) for q in response.queues]

    async def list_workers(self) -> builtins.list[WorkerInfo]:
        """The namespace's workers, most recently seen first: what each serves,
        its version and slots, when it was last seen and whether it counts as
        connected."""
        request = queue_service_pb2.ListWorkersRequest(namespace=self.namespace)
        response = await self._call(self._queues().ListWorkers, request)
        return [_convert.worker_info(w) for w in response.workers]

    async def pause_queue(self, name: str) -> Queue:
        """Stops the queue from dispatching runs; triggers are still accepted and
        running attempts go on. Returns the queue."""
        request = queue_service_pb2.PauseQueueRequest(
            namespace=self.namespace, name=_validate.name("queue name", name)
        )
        response = await self._call(self._queues().PauseQueue, request)
        return _convert.queue(response.queue)

    async def resume_queue(self, name: str) -> Queue:
        """Lets a paused queue dispatch again. Returns the queue."""
        request = queue_service_pb2.ResumeQueueRequest(
            namespace=self.namespace, name=_validate.name("queue name", name)
        )
        response = await self._call(self._queues().ResumeQueue, request)
        return _convert.queue(response.queue)
