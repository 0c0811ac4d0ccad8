"""AsyncClient, for applications in asyncio code: trigger runs (one or a batch),
read, list, cancel and wait for them; send events and complete wait tokens to
resume waiting runs; manage schedules and queues. Everything it returns is one
of the SDK's frozen dataclasses (_types), never a protobuf message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar, Unpack, overload

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn import resend
from cairn.limits import MAX_NAME_CHARS, MAX_PAGE_SIZE
from cairn.run_json import triggered_run
from cairn.v1 import (
    common_pb2,
    queue_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2_grpc,
    wait_service_pb2,
    wait_service_pb2_grpc,
)
from worker_sdk import _convert, _requests, _validate
from worker_sdk._grpc import (
    DEFAULT_RPC_TIMEOUT,
    GONE_CODES,
    TLSConfig,
    code_of,
    frontend_address,
    jittered,
    make_stub,
    open_channel,
    resolve_api_key,
    resolve_namespace,
    resolve_tls,
    retry_delay_of,
    to_cairn_error,
    unavailable_error,
)
from worker_sdk._schedules_queues import AnyTask, SchedulesAndQueues, _task_id
from worker_sdk._task import Task
from worker_sdk._tracing import trigger_span
from worker_sdk._types import (
    Run,
    RunStatus,
    RunUpdate,
    SendEventResult,
    TriggerOptions,
    WaitToken,
)
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError, RunFailedError, RunTimeoutError

P = TypeVar("P")
R = TypeVar("R")
WAIT_PER_CALL = 30.0
RUN_CANCELED = common_pb2.RUN_STATUS_CANCELED
TOKEN_COMPLETED = wait_service_pb2.WAIT_TOKEN_STATUS_COMPLETED
# A watch reconnects (after the last event it yielded) while the frontend is
# unreachable, for this many seconds in a row at most, backing off from
# WATCH_BACKOFF to resend.MAX_DELAY (jittered).
WATCH_RETRY_SECONDS = resend.RESEND_SECONDS
WATCH_BACKOFF = 0.1
# One item of batch_trigger: (task, payload), or a dict with "task", "payload",
# optionally "idempotency_key" and trigger options.
BatchItem: TypeAlias = tuple[str | AnyTask, Any] | Mapping[str, Any]


def _event_id(value: Any) -> int:
    """An after_event_id argument: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"after_event_id must be an int >= 0, got {value!r}")
    return value


def _batch_item(namespace: str, index: int, item: Any) -> run_service_pb2.TriggerRunRequest:
    """One batch_trigger item as a request; errors name it as runs[index]."""
    where = f"batch_trigger item {index}"
    field = f"runs[{index}]."
    if isinstance(item, Mapping):
        fields = dict(item)
        if "task" not in fields:
            raise InvalidArgumentError(f"{where}: a dict item needs a 'task' (a task id or a Task)")
        task = fields.pop("task")
        payload = fields.pop("payload", None)
        key = fields.pop("idempotency_key", None)
        return _requests.trigger_request(namespace, _task_id(task), payload, key, fields, where, field)
    if isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
        task, payload = item
        return _requests.trigger_request(namespace, _task_id(task), payload, None, {}, where, field)
    raise ArgumentTypeError(
        f"{where}: expected a (task, payload) pair or a dict with 'task', 'payload' and options, got {item!r}"
    )


class AsyncClient(SchedulesAndQueues):
    """Talks to the frontend's RunService, WaitService, ScheduleService and
    QueueService. address: argument, else $CAIRN_ADDRESS, else 127.0.0.1:7373; it
    may be a comma-separated list of frontends ("10.0.0.1:7373,10.0.0.2:7373") or
    a gRPC target ("dns:///cairn.internal:7373"): calls are spread over them and
    idempotent calls retried on another after UNAVAILABLE. namespace: argument,
    else $CAIRN_NAMESPACE, else "default". rpc_timeout bounds each call except the
    waits. api_key: argument, else $CAIRN_API_KEY, else the admin.key of `cairn
    dev` ($CAIRN_DEV_DIR, else ./.cairn), else none; sent on every call as
    `authorization: Bearer <key>` (a malformed one is InvalidArgumentError
    here). tls: a TLSConfig (the CA to trust, a client certificate for mutual
    TLS), else the CAIRN_TLS_* variables, else plaintext. Use it with `async
    with`, or call close()."""

    def __init__(
        self,
        address: str | None = None,
        namespace: str | None = None,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        *,
        api_key: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        self.address = frontend_address(address)
        self.namespace = resolve_namespace(namespace)
        self.rpc_timeout = rpc_timeout
        self.api_key = resolve_api_key(api_key)
        self.tls = resolve_tls(tls)
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
            self._channel = open_channel(self.address, self.api_key, self.tls)
        return self._channel

    def _service(self) -> run_service_pb2_grpc.RunServiceStub:
        if self._stub is None:
            self._stub = make_stub(run_service_pb2_grpc.RunServiceStub, self._open())
        return self._stub

    def _waits(self) -> wait_service_pb2_grpc.WaitServiceStub:
        if self._wait_stub is None:
            self._wait_stub = make_stub(wait_service_pb2_grpc.WaitServiceStub, self._open())
        return self._wait_stub

    def _schedules(self) -> schedule_service_pb2_grpc.ScheduleServiceStub:
        if self._schedule_stub is None:
            self._schedule_stub = make_stub(schedule_service_pb2_grpc.ScheduleServiceStub, self._open())
        return self._schedule_stub

    def _queues(self) -> queue_service_pb2_grpc.QueueServiceStub:
        if self._queue_stub is None:
            self._queue_stub = make_stub(queue_service_pb2_grpc.QueueServiceStub, self._open())
        return self._queue_stub

    # ---- runs ----

    @overload
    async def trigger(
        self,
        task: Task[P, R],
        payload: P,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[R]: ...

    @overload
    async def trigger(
        self,
        task: str,
        payload: Any = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]: ...

    async def trigger(
        self,
        task: str | AnyTask,
        payload: Any = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]:
        """Starts a run of task (an id or a Task) with payload, which must be
        JSON-serialisable. With idempotency_key, a second trigger returns the first
        run. Options: delay, ttl, max_duration (timedelta or seconds), priority
        (int from -1000 to 1000, higher first), tags (list of str), metadata (a
        JSON object), concurrency_key (str, 1-128 characters: the queue's
        concurrency and rate limits then apply per key, and keys are served
        fairly). QueueFullError when the task's queue is at its max_depth."""
        request = _requests.trigger_request(self.namespace, _task_id(task), payload, idempotency_key, options)
        with trigger_span([request.task_id], [request.options]) as span:  # OpenTelemetry, when installed
            response = await self._call(self._service().TriggerRun, request)
            span.triggered([response.run.id])
        return _convert.run(triggered_run(response, request.payload))

    async def batch_trigger(self, items: Sequence[BatchItem]) -> list[Run[Any]]:
        """Starts many runs in one call, all or none: each item is a (task, payload)
        pair or a dict with "task", "payload" and optionally "idempotency_key" and
        trigger options. Returns the runs in item order. QueueFullError (and no
        run created) when a queue would go over its max_depth."""
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise ArgumentTypeError(f"batch_trigger: expected a list of items, got {items!r}")
        _validate.batch_size("runs", len(items))
        requests = [_batch_item(self.namespace, i, item) for i, item in enumerate(items)]
        if not requests:
            return []
        request = run_service_pb2.BatchTriggerRunsRequest(namespace=self.namespace, runs=requests)
        with trigger_span([r.task_id for r in request.runs], [r.options for r in request.runs]) as span:
            response = await self._call(self._service().BatchTriggerRuns, request)
            span.triggered([r.run.id for r in response.runs])
        return [
            _convert.run(triggered_run(r, sent.payload))
            for r, sent in zip(response.runs, requests, strict=True)
        ]

    async def get(self, run_id: str) -> Run[Any]:
        """The run with its attempts and steps. NotFoundError when unknown."""
        request = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
        response = await self._call(self._service().GetRun, request)
        return _convert.run(response.run)

    async def list(
        self,
        task: str | AnyTask | None = None,
        status: str | RunStatus | Iterable[str | RunStatus] | None = None,
        limit: int = 50,
        tag: str | None = None,
        parent_run_id: str | None = None,
        *,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[Run[Any]]:
        """Up to limit runs, newest first, optionally of one task, in the given
        statuses (RunStatus or lowercase names such as "failed"), carrying a tag,
        children of a run, on a queue, or created at or after created_after and
        before created_before (timezone-aware datetimes), following pages as
        needed. The filters combine (all must hold)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"limit must be a positive int, got {limit!r}")
        task_id = _task_id(task) if task is not None else ""
        request = _requests.list_runs_request(
            self.namespace, task_id, status, tag, parent_run_id, queue, created_after, created_before
        )
        runs: list[Run[Any]] = []
        while len(runs) < limit:
            request.page_size = min(MAX_PAGE_SIZE, limit - len(runs))
            response = await self._call(self._service().ListRuns, request)
            runs.extend(_convert.run(r) for r in response.runs)
            if not response.next_page_token or not response.runs:
                break
            request.page_token = response.next_page_token
        return runs[:limit]

    async def cancel(self, run_id: str, reason: str = "") -> Run[Any]:
        """Cancels a run that has not finished. FailedPreconditionError when it has
        (but a cancel sent again after UNAVAILABLE, whose first sending landed,
        answers the canceled run)."""
        request = run_service_pb2.CancelRunRequest(namespace=self.namespace, run_id=run_id, reason=reason)

        async def landed(exc: grpc.RpcError) -> run_service_pb2.CancelRunResponse | None:
            if code_of(exc) != grpc.StatusCode.FAILED_PRECONDITION:
                return None
            got = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
            run = (await self._call(self._service().GetRun, got)).run
            return run_service_pb2.CancelRunResponse(run=run) if run.status == RUN_CANCELED else None

        response = await self._call(self._service().CancelRun, request, landed)
        return _convert.run(response.run)

    async def replay(self, run_id: str) -> Run[Any]:
        """A new run of the run's task with its payload and options (priority, tags,
        metadata, concurrency key, ttl, max_duration; no delay), whatever its
        status; the new run's replay_of is run_id. NotFoundError when unknown."""
        request = run_service_pb2.ReplayRunRequest(namespace=self.namespace, run_id=run_id)
        response = await self._call(self._service().ReplayRun, request)
        return _convert.run(response.run)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run[Any]:
        """Waits until the run is in a terminal status and returns it. Raises
        RunTimeoutError (a TimeoutError) naming the run when timeout seconds pass
        first (None: no limit). An unreachable frontend (or one saying history
        is down), and a refusal by a limit of the API key (after the delay it
        names), are retried within the timeout (with none, until the run ends)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.1
        last: Run[Any] | None = None
        while True:
            per_call = WAIT_PER_CALL
            if deadline is not None:
                per_call = min(per_call, deadline - loop.time())
                if per_call <= 0:
                    status = f" (status: {last.status})" if last else ""
                    raise RunTimeoutError(f"run {run_id} did not finish within {timeout}s{status}")
            wait = Duration()
            wait.FromNanoseconds(max(1, round(per_call * 1e9)))
            request = run_service_pb2.WaitRunRequest(namespace=self.namespace, run_id=run_id, timeout=wait)
            try:
                response = await self._service().WaitRun(request, timeout=per_call + 10)
            except grpc.RpcError as exc:
                if (limited := retry_delay_of(exc)) is not None:
                    pause = jittered(limited)
                elif code_of(exc) in (*GONE_CODES, grpc.StatusCode.DEADLINE_EXCEEDED):
                    pause, delay = resend.jittered(delay), resend.next_delay(delay)
                else:
                    raise to_cairn_error(exc) from None
                if deadline is not None and loop.time() + pause >= deadline:
                    if code_of(exc) in GONE_CODES:
                        raise unavailable_error(exc, self.address, timeout) from None
                    raise to_cairn_error(exc) from None
                await asyncio.sleep(pause)
                continue
            delay = 0.1
            last = _convert.run(response.run)
            if response.done or last.done:
                return last

    async def watch(self, run_id: str, after_event_id: int = 0) -> AsyncIterator[RunUpdate]:
        """The run's updates as they happen, from its start (or after the event
        after_event_id, an event id of this run: a watch resumes there), in
        order: every status change, attempt, step, wait, metadata update, log
        line ("log") and stream chunk ("stream"), each with the run after it.
        Ends after the update that ends the run (done). NotFoundError for an
        unknown run; InvalidArgumentError when after_event_id is not one of its
        events. A briefly unreachable frontend is reconnected to after the last
        event yielded, so nothing is missed or repeated, and so is a watch
        refused by a limit of the API key, after the delay it names.
        `async for update in client.watch(run_id): ...`"""
        request = run_service_pb2.WatchRunRequest(namespace=self.namespace, run_id=run_id)
        async for update in self._watch("WatchRun", request, _event_id(after_event_id), to_end=True):
            yield update

    async def watch_runs(
        self, task: str | AnyTask | None = None, tags: Iterable[str] = (), after_event_id: int = 0
    ) -> AsyncIterator[RunUpdate]:
        """Updates of the namespace's runs (of task, carrying every one of tags)
        from the call on, or after the event after_event_id (the last one an
        earlier watch saw), in event order, one per event: a live runs list.
        Never ends; break out of the loop to stop. A briefly unreachable
        frontend is reconnected to after the last event yielded."""
        if isinstance(tags, str):
            raise ArgumentTypeError(f"tags must be a list of strings, got {tags!r}")
        request = run_service_pb2.WatchRunsRequest(
            namespace=self.namespace,
            task_id=_task_id(task) if task is not None else "",
            tags=list(tags),
        )
        async for update in self._watch("WatchRuns", request, _event_id(after_event_id), to_end=False):
            yield update

    async def _watch(self, method: str, request: Any, after: int, to_end: bool) -> AsyncIterator[RunUpdate]:
        """A watch stream from after the event `after`, reconnected after the
        last update yielded while the frontend is unreachable (a restart, a
        frontend of a list going away, a frontend ending its streams as it
        shuts down), for WATCH_RETRY_SECONDS in a row at most, and after the
        delay a refusal by a limit of the API key names."""
        loop = asyncio.get_running_loop()
        failing_since: float | None = None  # reset by an update, or a stream that stayed up
        backoff = WATCH_BACKOFF
        convert = _convert.RunUpdates()
        while True:
            sent = type(request)()
            sent.CopyFrom(request)
            sent.after_event_id = after
            opened = loop.time()
            call = getattr(self._service(), method)(sent)
            try:
                async for response in call:
                    for message in response.updates:
                        update = convert(message)
                        after, failing_since, backoff = update.event.id, None, WATCH_BACKOFF
                        yield update
                        if update.done and to_end:  # WatchRuns: one run ended, the others go on
                            return
                return
            except grpc.RpcError as exc:
                now, limited = loop.time(), retry_delay_of(exc)
                if limited is None and code_of(exc) not in GONE_CODES:
                    raise to_cairn_error(exc) from None
                if failing_since is None or now - opened >= WATCH_RETRY_SECONDS:
                    failing_since = opened
                if limited is None and now - failing_since >= WATCH_RETRY_SECONDS:
                    raise unavailable_error(exc, self.address, now - failing_since) from None
            finally:
                call.cancel()
            if limited is not None:
                await asyncio.sleep(jittered(limited))
            else:
                await asyncio.sleep(resend.jittered(backoff))
                backoff = resend.next_delay(backoff)

    @overload
    async def trigger_and_wait(
        self,
        task: Task[P, R],
        payload: P,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[R]: ...

    @overload
    async def trigger_and_wait(
        self,
        task: str,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]: ...

    async def trigger_and_wait(
        self,
        task: str | AnyTask,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]:
        """Triggers a run (with the options of trigger) and waits for it. Returns
        the completed run, whose output is the task's result (typed R for a
        Task[P, R]); raises RunFailedError (holding the run) when it ended
        otherwise, and RunTimeoutError when timeout seconds pass first."""
        run = await self.trigger(_task_id(task), payload, idempotency_key=idempotency_key, **options)
        run = await self.wait(run.id, timeout=timeout)
        if run.status != RunStatus.COMPLETED:
            raise RunFailedError(run)
        return run

    # ---- events and wait tokens ----

    async def send_event(
        self, name: str, payload: Any = None, *, run_id: str | None = None, key: str | None = None
    ) -> SendEventResult:
        """Sends an event. With run_id it goes to that run, and is kept until the run
        waits for an event of that name; without, it goes to every run waiting right
        now for that name and key (wait.for_event(name, key=...))."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"send_event: name must be a non-empty string, got {name!r}")
        _validate.text("send_event: name", name, MAX_NAME_CHARS)
        if key is not None:
            _validate.text("send_event: key", key, MAX_NAME_CHARS)
        request = wait_service_pb2.SendEventRequest(
            namespace=self.namespace,
            run_id=run_id or "",
            name=name,
            key=key or "",
            payload=_requests.encode_payload(f"payload of event '{name}'", payload),
        )
        response = await self._call(self._waits().SendEvent, request)
        return SendEventResult(delivered_run_ids=list(response.delivered_run_ids), buffered=response.buffered)

    async def create_token(
        self, timeout: timedelta | float | None = None, *, idempotency_key: str | None = None
    ) -> WaitToken:
        """Creates a wait token (not tied to a run); with timeout it times out that
        long after creation."""
        request = wait_service_pb2.CreateWaitTokenRequest(
            namespace=self.namespace,
            idempotency_key=_validate.idempotency_key("idempotency_key", idempotency_key or ""),
        )
        if timeout is not None:
            seconds = _validate.duration_seconds("timeout", timeout, allow_zero=False)
            request.timeout.CopyFrom(_requests.to_duration(seconds))
        response = await self._call(self._waits().CreateWaitToken, request)
        return _convert.token(response.token)

    async def complete_token(self, token_id: str | WaitToken, payload: Any = None) -> WaitToken:
        """Completes a token with payload, resuming the run waiting on it. NotFoundError
        for an unknown token; FailedPreconditionError when already completed or timed out."""
        token_id = str(token_id)
        request = wait_service_pb2.CompleteWaitTokenRequest(
            namespace=self.namespace,
            token_id=token_id,
            payload=_requests.encode_payload(f"payload for token {token_id}", payload),
        )

        async def landed(exc: grpc.RpcError) -> wait_service_pb2.CompleteWaitTokenResponse | None:
            """A completion sent again after UNAVAILABLE, refused as done: ours if
            the token holds our payload."""
            if code_of(exc) != grpc.StatusCode.FAILED_PRECONDITION:
                return None
            got = wait_service_pb2.GetWaitTokenRequest(namespace=self.namespace, token_id=token_id)
            token = (await self._call(self._waits().GetWaitToken, got)).token
            ours = token.status == TOKEN_COMPLETED and token.payload == request.payload
            return wait_service_pb2.CompleteWaitTokenResponse(token=token) if ours else None

        response = await self._call(self._waits().CompleteWaitToken, request, landed)
        return _convert.token(response.token)

    async def get_token(self, token_id: str | WaitToken) -> WaitToken:
        """A token: its status (pending, completed, timed_out), payload and times."""
        request = wait_service_pb2.GetWaitTokenRequest(namespace=self.namespace, token_id=str(token_id))
        response = await self._call(self._waits().GetWaitToken, request)
        return _convert.token(response.token)
