"""Clients for applications: trigger runs (one or a batch), read, list, cancel
and wait for them; send events and complete wait tokens to resume waiting runs;
manage schedules and queues. AsyncClient for asyncio code; Client, the same
methods, for synchronous code. Tokens, schedules and queues come back as plain
dicts (the JSON shape of cairn.run_json)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn.addresses import check_address
from cairn.run_json import queue_to_dict, run_to_dict, schedule_to_dict, token_to_dict
from cairn.statuses import RUN_STATUS_BY_NAME, TERMINAL_RUN_STATUSES
from cairn.v1 import (
    common_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    wait_service_pb2,
    wait_service_pb2_grpc,
)
from worker_sdk._grpc import (
    call_mapped,
    code_of,
    open_channel,
    resolve_address,
    resolve_namespace,
    to_cairn_error,
)
from worker_sdk.errors import RunFailedError
from worker_sdk.options import INT32_MAX, duration_seconds, encode_payload, options_from_kwargs, to_duration
from worker_sdk.retry import validate_name
from worker_sdk.task import Task

T = TypeVar("T")
WAIT_PER_CALL = 30.0
MAX_PAGE = 1000


@dataclass(frozen=True)
class Run:
    """A run as the server last reported it. `raw` is the full JSON-ready dict
    (cairn.run_json.run_to_dict) with every other field, e.g. raw["created_at"]."""

    id: str
    task: str
    status: str
    output: Any
    error: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, run: common_pb2.Run) -> Run:
        d = run_to_dict(run)
        return cls(
            id=d["id"],
            task=d["task"],
            status=d["status"],
            output=d["output"],
            error=d["error"],
            attempts=d["attempts"],
            steps=d["steps"],
            raw=d,
        )

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal status, which never changes again."""
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def parent_run_id(self) -> str | None:
        """The run that triggered this one from its code, if any."""
        return self.raw.get("parent_run_id")

    @property
    def tags(self) -> list[str]:
        return self.raw.get("tags") or []

    @property
    def metadata(self) -> dict[str, Any]:
        return self.raw.get("metadata") or {}

    @property
    def child_run_ids(self) -> list[str]:
        """Runs this one triggered (filled by get and wait, empty in lists)."""
        return self.raw.get("child_run_ids") or []

    @property
    def wait(self) -> dict[str, Any] | None:
        """What the run waits for while waiting (kind, position, event_name, ...)."""
        return self.raw.get("wait")


@dataclass(frozen=True)
class SendEventResult:
    """Where an event went: the runs whose wait it resolved now, and whether it
    was kept for the run it was sent to because that run is not waiting for it yet."""

    delivered_run_ids: list[str]
    buffered: bool


def _task_id(task: str | Task) -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, str) and task:
        return task
    raise TypeError(f"task must be a task id string or a Task, got {task!r}")


def _trigger_request(
    namespace: str,
    task: str | Task,
    payload: Any,
    idempotency_key: str | None,
    options: Mapping[str, Any],
    where: str = "trigger",
) -> run_service_pb2.TriggerRunRequest:
    task_id = _task_id(task)
    opts = options_from_kwargs(where, options)
    request = run_service_pb2.TriggerRunRequest(
        namespace=namespace,
        task_id=task_id,
        payload=encode_payload(f"payload for task '{task_id}'", payload),
        idempotency_key=idempotency_key or "",
    )
    if opts.ByteSize():
        request.options.CopyFrom(opts)
    return request


def _batch_item(namespace: str, index: int, item: Any) -> run_service_pb2.TriggerRunRequest:
    """One batch_trigger item: (task, payload), or a dict with task, payload,
    idempotency_key and trigger options."""
    where = f"batch_trigger item {index}"
    if isinstance(item, Mapping):
        fields = dict(item)
        if "task" not in fields:
            raise ValueError(f"{where}: a dict item needs a 'task' (a task id or a Task)")
        task = fields.pop("task")
        payload = fields.pop("payload", None)
        key = fields.pop("idempotency_key", None)
        return _trigger_request(namespace, task, payload, key, fields, where)
    if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
        task, payload = item
        return _trigger_request(namespace, task, payload, None, {}, where)
    raise TypeError(
        f"{where}: expected a (task, payload) pair or a dict with 'task', 'payload' and options, got {item!r}"
    )


def _limit(what: str, value: Any) -> int:
    """A queue limit: an int from 0 (no limit) to 2**31-1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if not 0 <= value <= INT32_MAX:
        raise ValueError(f"{what} must be from 0 (no limit) to {INT32_MAX}, got {value}")
    return value


def _rate_limit(name: str, value: Any) -> queue_service_pb2.RateLimit:
    """(limit, period) with period a timedelta or seconds, as a RateLimit; a limit
    of 0 removes the rate limit (its period is then ignored)."""
    what = f"queue {name!r}: rate_limit"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(
            f"{what} must be a (limit, period) pair, e.g. (10, 1) for 10 per "
            f"second or (0, 0) to remove it; got {value!r}"
        )
    limit = _limit(f"{what} limit", value[0])
    rate = queue_service_pb2.RateLimit(limit=limit)
    if limit:
        rate.period.CopyFrom(to_duration(duration_seconds(f"{what} period", value[1], allow_zero=False)))
    return rate


def _statuses(status: str | list[str] | None) -> list[int]:
    if status is None:
        return []
    names = [status] if isinstance(status, str) else list(status)
    out = []
    for name in names:
        value = RUN_STATUS_BY_NAME.get(str(name).lower())
        if value is None:
            raise ValueError(
                f"status {name!r} is not a run status; use one of {', '.join(sorted(RUN_STATUS_BY_NAME))}"
            )
        out.append(value)
    return out


class AsyncClient:
    """Talks to the frontend's RunService, WaitService, ScheduleService and
    QueueService. address: argument, else $CAIRN_ADDRESS, else 127.0.0.1:7373; it
    may be a comma-separated list of frontends ("10.0.0.1:7373,10.0.0.2:7373") or
    a gRPC target ("dns:///cairn.internal:7373"): calls are spread over them and
    idempotent calls retried on another after UNAVAILABLE. namespace: argument,
    else $CAIRN_NAMESPACE, else "default". rpc_timeout bounds each call except the
    waits. Use it with `async with`, or call close()."""

    def __init__(
        self, address: str | None = None, namespace: str | None = None, rpc_timeout: float = 30.0
    ) -> None:
        self.address = check_address(resolve_address(address))
        self.namespace = resolve_namespace(namespace)
        self.rpc_timeout = rpc_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: run_service_pb2_grpc.RunServiceStub | None = None
        self._wait_stub: wait_service_pb2_grpc.WaitServiceStub | None = None
        self._schedule_stub: schedule_service_pb2_grpc.ScheduleServiceStub | None = None
        self._queue_stub: queue_service_pb2_grpc.QueueServiceStub | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; the client can be used again afterwards (it reconnects)."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._stub = self._wait_stub = self._schedule_stub = self._queue_stub = None
            await channel.close()

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_channel(self.address)
        return self._channel

    def _service(self) -> run_service_pb2_grpc.RunServiceStub:
        if self._stub is None:
            self._stub = run_service_pb2_grpc.RunServiceStub(self._open())
        return self._stub

    def _waits(self) -> wait_service_pb2_grpc.WaitServiceStub:
        if self._wait_stub is None:
            self._wait_stub = wait_service_pb2_grpc.WaitServiceStub(self._open())
        return self._wait_stub

    def _schedules(self) -> schedule_service_pb2_grpc.ScheduleServiceStub:
        if self._schedule_stub is None:
            self._schedule_stub = schedule_service_pb2_grpc.ScheduleServiceStub(self._open())
        return self._schedule_stub

    def _queues(self) -> queue_service_pb2_grpc.QueueServiceStub:
        if self._queue_stub is None:
            self._queue_stub = queue_service_pb2_grpc.QueueServiceStub(self._open())
        return self._queue_stub

    async def trigger(
        self, task: str | Task, payload: Any = None, idempotency_key: str | None = None, **options: Any
    ) -> Run:
        """Starts a run of task (an id or a Task) with payload, which must be
        JSON-serialisable. With idempotency_key, a second trigger returns the first
        run. Options: delay, ttl, max_duration (timedelta or seconds), priority
        (int, higher first), tags (list of str), metadata (a JSON object),
        concurrency_key (str, 1-128 characters: the queue's concurrency and rate
        limits then apply per key, and keys are served fairly). QueueFullError
        when the task's queue is at its max_depth."""
        request = _trigger_request(self.namespace, task, payload, idempotency_key, options)
        response = await call_mapped(self._service().TriggerRun, request, self.rpc_timeout)
        return Run.from_proto(response.run)

    async def batch_trigger(self, items: Sequence[Any]) -> list[Run]:
        """Starts many runs in one call, all or none: each item is a (task, payload)
        pair or a dict with "task", "payload" and optionally "idempotency_key" and
        trigger options. Returns the runs in item order. QueueFullError (and no
        run created) when a queue would go over its max_depth."""
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise TypeError(f"batch_trigger: expected a list of items, got {items!r}")
        requests = [_batch_item(self.namespace, i, item) for i, item in enumerate(items)]
        if not requests:
            return []
        request = run_service_pb2.BatchTriggerRunsRequest(namespace=self.namespace, runs=requests)
        response = await call_mapped(self._service().BatchTriggerRuns, request, self.rpc_timeout)
        return [Run.from_proto(r.run) for r in response.runs]

    async def get(self, run_id: str) -> Run:
        """The run with its attempts and steps. NotFoundError when unknown."""
        request = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
        response = await call_mapped(self._service().GetRun, request, self.rpc_timeout)
        return Run.from_proto(response.run)

    async def list(
        self,
        task: str | Task | None = None,
        status: str | list[str] | None = None,
        limit: int = 50,
        tag: str | None = None,
        parent_run_id: str | None = None,
    ) -> list[Run]:
        """Up to limit runs, newest first, optionally of one task, in the given
        statuses (lowercase names such as "failed"), carrying a tag, or children of
        a run, following pages as needed."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        request = run_service_pb2.ListRunsRequest(
            namespace=self.namespace,
            task_id=_task_id(task) if task is not None else "",
            statuses=_statuses(status),
            tag=tag or "",
            parent_run_id=parent_run_id or "",
        )
        runs: list[Run] = []
        while len(runs) < limit:
            request.page_size = min(MAX_PAGE, limit - len(runs))
            response = await call_mapped(self._service().ListRuns, request, self.rpc_timeout)
            runs.extend(Run.from_proto(r) for r in response.runs)
            if not response.next_page_token or not response.runs:
                break
            request.page_token = response.next_page_token
        return runs[:limit]

    async def cancel(self, run_id: str, reason: str = "") -> Run:
        """Cancels a run that has not finished. FailedPreconditionError when it has."""
        request = run_service_pb2.CancelRunRequest(namespace=self.namespace, run_id=run_id, reason=reason)
        response = await call_mapped(self._service().CancelRun, request, self.rpc_timeout)
        return Run.from_proto(response.run)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Waits until the run is in a terminal status and returns it. Raises
        TimeoutError naming the run when timeout seconds pass first (None: no limit).
        A briefly unreachable server is retried within the timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.1
        last: Run | None = None
        while True:
            per_call = WAIT_PER_CALL
            if deadline is not None:
                per_call = min(per_call, deadline - loop.time())
                if per_call <= 0:
                    status = f" (status: {last.status})" if last else ""
                    raise TimeoutError(f"run {run_id} did not finish within {timeout}s{status}")
            wait = Duration()
            wait.FromNanoseconds(max(1, round(per_call * 1e9)))
            request = run_service_pb2.WaitRunRequest(namespace=self.namespace, run_id=run_id, timeout=wait)
            try:
                response = await self._service().WaitRun(request, timeout=per_call + 10)
            except grpc.RpcError as exc:
                if code_of(exc) not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise to_cairn_error(exc) from None
                if deadline is not None and loop.time() + delay >= deadline:
                    raise to_cairn_error(exc) from None
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            delay = 0.1
            last = Run.from_proto(response.run)
            if response.done or last.done:
                return last

    async def trigger_and_wait(
        self,
        task: str | Task,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Run:
        """Triggers a run (with the options of trigger) and waits for it. Returns
        the completed run; raises RunFailedError (holding the run) when it ended
        otherwise, and TimeoutError when timeout seconds pass first."""
        run = await self.trigger(task, payload, idempotency_key=idempotency_key, **options)
        run = await self.wait(run.id, timeout=timeout)
        if run.status != "completed":
            raise RunFailedError(run)
        return run

    async def send_event(
        self, name: str, payload: Any = None, *, run_id: str | None = None, key: str | None = None
    ) -> SendEventResult:
        """Sends an event. With run_id it goes to that run, and is kept until the run
        waits for an event of that name; without, it goes to every run waiting right
        now for that name and key (wait.for_event(name, key=...))."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"send_event: name must be a non-empty string, got {name!r}")
        request = wait_service_pb2.SendEventRequest(
            namespace=self.namespace,
            run_id=run_id or "",
            name=name,
            key=key or "",
            payload=encode_payload(f"payload of event '{name}'", payload),
        )
        response = await call_mapped(self._waits().SendEvent, request, self.rpc_timeout)
        return SendEventResult(delivered_run_ids=list(response.delivered_run_ids), buffered=response.buffered)

    async def create_token(
        self, timeout: timedelta | float | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Creates a wait token (not tied to a run); with timeout it times out that
        long after creation. Returns it as a dict (id, status, timeout_at, ...)."""
        request = wait_service_pb2.CreateWaitTokenRequest(
            namespace=self.namespace, idempotency_key=idempotency_key or ""
        )
        if timeout is not None:
            request.timeout.CopyFrom(to_duration(duration_seconds("timeout", timeout, allow_zero=False)))
        response = await call_mapped(self._waits().CreateWaitToken, request, self.rpc_timeout)
        return token_to_dict(response.token)

    async def complete_token(self, token_id: str, payload: Any = None) -> dict[str, Any]:
        """Completes a token with payload, resuming the run waiting on it. NotFoundError
        for an unknown token; FailedPreconditionError when already completed or timed out."""
        request = wait_service_pb2.CompleteWaitTokenRequest(
            namespace=self.namespace,
            token_id=token_id,
            payload=encode_payload(f"payload for token {token_id}", payload),
        )
        response = await call_mapped(self._waits().CompleteWaitToken, request, self.rpc_timeout)
        return token_to_dict(response.token)

    async def get_token(self, token_id: str) -> dict[str, Any]:
        """A token as a dict: id, run_id, status ("pending", "completed", "timed_out"),
        payload, created_at, completed_at, timeout_at."""
        request = wait_service_pb2.GetWaitTokenRequest(namespace=self.namespace, token_id=token_id)
        response = await call_mapped(self._waits().GetWaitToken, request, self.rpc_timeout)
        return token_to_dict(response.token)

    async def create_schedule(
        self,
        schedule_id: str,
        task: str | Task,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        deduplication_key: str | None = None,
    ) -> dict[str, Any]:
        """Creates a schedule that triggers task with payload on a cron expression (5
        fields, or 6 with seconds first) read in timezone. AlreadyExistsError when the
        id is taken. Returns it as a dict."""
        task_id = _task_id(task)
        request = schedule_service_pb2.CreateScheduleRequest(
            namespace=self.namespace,
            schedule_id=schedule_id,
            task_id=task_id,
            cron=cron,
            timezone=timezone or "",
            payload=encode_payload(f"payload for schedule '{schedule_id}'", payload),
            deduplication_key=deduplication_key or "",
        )
        response = await call_mapped(self._schedules().CreateSchedule, request, self.rpc_timeout)
        return schedule_to_dict(response.schedule)

    async def list_schedules(self, task: str | Task | None = None) -> list[dict[str, Any]]:
        """The namespace's schedules (declared with tasks and created), by id."""
        request = schedule_service_pb2.ListSchedulesRequest(
            namespace=self.namespace, task_id=_task_id(task) if task is not None else ""
        )
        response = await call_mapped(self._schedules().ListSchedules, request, self.rpc_timeout)
        return [schedule_to_dict(s) for s in response.schedules]

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Stops a schedule from firing until it is resumed."""
        request = schedule_service_pb2.PauseScheduleRequest(namespace=self.namespace, schedule_id=schedule_id)
        response = await call_mapped(self._schedules().PauseSchedule, request, self.rpc_timeout)
        return schedule_to_dict(response.schedule)

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Lets a paused schedule fire again, from its next tick."""
        request = schedule_service_pb2.ResumeScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        response = await call_mapped(self._schedules().ResumeSchedule, request, self.rpc_timeout)
        return schedule_to_dict(response.schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Deletes a schedule. NotFoundError when unknown."""
        request = schedule_service_pb2.DeleteScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        await call_mapped(self._schedules().DeleteSchedule, request, self.rpc_timeout)

    async def update_queue(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: tuple[int, timedelta | float] | None = None,
        max_depth: int | None = None,
    ) -> dict[str, Any]:
        """Creates the queue or changes its settings; an argument left None keeps
        its value. concurrency_limit: at most this many runs execute at once (0
        removes the limit); rate_limit: (limit, period), at most limit attempts
        start per period (timedelta or seconds), (0, 0) removes it; max_depth:
        triggers beyond this many queued runs fail with QueueFullError (0 removes
        it). With a concurrency key on runs, the concurrency and rate limits apply
        per key. From then on a task's declaration no longer changes these settings
        (the queue is "managed"). Returns the queue as a dict."""
        name = validate_name("queue name", name)
        request = queue_service_pb2.UpdateQueueRequest(namespace=self.namespace, name=name)
        if concurrency_limit is not None:
            request.concurrency_limit = _limit(f"queue {name!r}: concurrency_limit", concurrency_limit)
        if rate_limit is not None:
            request.rate_limit.CopyFrom(_rate_limit(name, rate_limit))
        if max_depth is not None:
            request.max_depth = _limit(f"queue {name!r}: max_depth", max_depth)
        response = await call_mapped(self._queues().UpdateQueue, request, self.rpc_timeout)
        return queue_to_dict(response.queue)

    async def list_queues(self) -> list[dict[str, Any]]:
        """The namespace's queues, by name, with their settings, how many runs are
        queued (depth) and how many are executing (running)."""
        request = queue_service_pb2.ListQueuesRequest(namespace=self.namespace)
        response = await call_mapped(self._queues().ListQueues, request, self.rpc_timeout)
        return [queue_to_dict(q) for q in response.queues]

    async def pause_queue(self, name: str) -> dict[str, Any]:
        """Stops the queue from dispatching runs; triggers are still accepted and
        running attempts go on. Returns the queue."""
        request = queue_service_pb2.PauseQueueRequest(
            namespace=self.namespace, name=validate_name("queue name", name)
        )
        response = await call_mapped(self._queues().PauseQueue, request, self.rpc_timeout)
        return queue_to_dict(response.queue)

    async def resume_queue(self, name: str) -> dict[str, Any]:
        """Lets a paused queue dispatch again. Returns the queue."""
        request = queue_service_pb2.ResumeQueueRequest(
            namespace=self.namespace, name=validate_name("queue name", name)
        )
        response = await call_mapped(self._queues().ResumeQueue, request, self.rpc_timeout)
        return queue_to_dict(response.queue)


class Client:
    """The AsyncClient's methods for synchronous code. It runs a private event
    loop in a background thread; call it from ordinary (non-async) code, and use
    AsyncClient inside async code. Use it with `with`, or call close()."""

    def __init__(
        self, address: str | None = None, namespace: str | None = None, rpc_timeout: float = 30.0
    ) -> None:
        self._async = AsyncClient(address, namespace, rpc_timeout)
        self.address = self._async.address
        self.namespace = self._async.namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cairn-client", daemon=True)
        self._thread.start()
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this Client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Closes the channel and stops the background loop."""
        if self._closed:
            return
        try:
            self._call(self._async.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def trigger(
        self, task: str | Task, payload: Any = None, idempotency_key: str | None = None, **options: Any
    ) -> Run:
        """See AsyncClient.trigger."""
        return self._call(self._async.trigger(task, payload, idempotency_key, **options))

    def batch_trigger(self, items: Sequence[Any]) -> list[Run]:
        """See AsyncClient.batch_trigger."""
        return self._call(self._async.batch_trigger(items))

    def get(self, run_id: str) -> Run:
        """See AsyncClient.get."""
        return self._call(self._async.get(run_id))

    def list(
        self,
        task: str | Task | None = None,
        status: str | list[str] | None = None,
        limit: int = 50,
        tag: str | None = None,
        parent_run_id: str | None = None,
    ) -> list[Run]:
        """See AsyncClient.list."""
        return self._call(self._async.list(task, status, limit, tag=tag, parent_run_id=parent_run_id))

    def cancel(self, run_id: str, reason: str = "") -> Run:
        """See AsyncClient.cancel."""
        return self._call(self._async.cancel(run_id, reason))

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """See AsyncClient.wait."""
        return self._call(self._async.wait(run_id, timeout))

    def trigger_and_wait(
        self,
        task: str | Task,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Run:
        """See AsyncClient.trigger_and_wait."""
        return self._call(self._async.trigger_and_wait(task, payload, timeout, idempotency_key, **options))

    def send_event(
        self, name: str, payload: Any = None, *, run_id: str | None = None, key: str | None = None
    ) -> SendEventResult:
        """See AsyncClient.send_event."""
        return self._call(self._async.send_event(name, payload, run_id=run_id, key=key))

    def create_token(
        self, timeout: timedelta | float | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """See AsyncClient.create_token."""
        return self._call(self._async.create_token(timeout, idempotency_key=idempotency_key))

    def complete_token(self, token_id: str, payload: Any = None) -> dict[str, Any]:
        """See AsyncClient.complete_token."""
        return self._call(self._async.complete_token(token_id, payload))

    def get_token(self, token_id: str) -> dict[str, Any]:
        """See AsyncClient.get_token."""
        return self._call(self._async.get_token(token_id))

    def create_schedule(
        self,
        schedule_id: str,
        task: str | Task,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        deduplication_key: str | None = None,
    ) -> dict[str, Any]:
        """See AsyncClient.create_schedule."""
        return self._call(
            self._async.create_schedule(
                schedule_id,
                task,
                cron,
                timezone=timezone,
                payload=payload,
                deduplication_key=deduplication_key,
            )
        )

    def list_schedules(self, task: str | Task | None = None) -> list[dict[str, Any]]:
        """See AsyncClient.list_schedules."""
        return self._call(self._async.list_schedules(task))

    def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        """See AsyncClient.pause_schedule."""
        return self._call(self._async.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        """See AsyncClient.resume_schedule."""
        return self._call(self._async.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        """See AsyncClient.delete_schedule."""
        return self._call(self._async.delete_schedule(schedule_id))

    def update_queue(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: tuple[int, timedelta | float] | None = None,
        max_depth: int | None = None,
    ) -> dict[str, Any]:
        """See AsyncClient.update_queue."""
        return self._call(
            self._async.update_queue(
                name, concurrency_limit=concurrency_limit, rate_limit=rate_limit, max_depth=max_depth
            )
        )

    def list_queues(self) -> list[dict[str, Any]]:
        """See AsyncClient.list_queues."""
        return self._call(self._async.list_queues())

    def pause_queue(self, name: str) -> dict[str, Any]:
        """See AsyncClient.pause_queue."""
        return self._call(self._async.pause_queue(name))

    def resume_queue(self, name: str) -> dict[str, Any]:
        """See AsyncClient.resume_queue."""
        return self._call(self._async.resume_queue(name))
