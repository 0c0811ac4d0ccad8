"""The CLI's calls to the Cairn frontend, on the generated gRPC stubs.

Each method builds one request from command-line values, checks them as the
SDK does before anything is sent (a bad value is a ValueError or TypeError,
which the CLI reports with exit status 2), makes the call, and returns the
answer in its JSON shape (cairn.run_json), which is all the CLI prints. A gRPC
error becomes FrontendError, or Unreachable when no frontend answered."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn import addresses, credentials, resend
from cairn.limits import DEFAULT_NAMESPACE
from cairn.run_json import (
    LogLineJSON,
    QueueJSON,
    RunJSON,
    RunSummaryJSON,
    RunUpdateJSON,
    ScheduleJSON,
    SendEventJSON,
    TokenJSON,
    WorkerJSON,
    log_line_from_event,
    log_line_to_dict,
    queue_to_dict,
    run_summary_to_dict,
    run_to_dict,
    run_update_to_dict,
    schedule_to_dict,
    send_event_to_dict,
    token_to_dict,
    triggered_run,
    worker_to_dict,
)
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
from cairn_cli.channel import (
    GONE,
    BackendDown,
    FrontendError,
    Unreachable,
    call,
    error,
    first_contact,
    open_channel,
)
from cairn_cli.inputs import duration as _duration
from cairn_cli.inputs import limit as _limit
from cairn_cli.inputs import payload as _payload
from cairn_cli.inputs import queue_name as _queue_name
from cairn_cli.inputs import task_id as _task_id
from cairn_cli.inputs import trigger_options as _trigger_options

__all__ = ["BackendDown", "Frontend", "FrontendError", "Unreachable"]

R = TypeVar("R")
RPC_TIMEOUT = 30.0  # each call but the long polls of wait_run
WAIT_PER_CALL = 30.0  # the longest WaitRun poll
MAX_PAGE = 1000
# The generated stubs are untyped; their methods take a request and return Any.
_Stub = Callable[[grpc.Channel], Any]
_RUNS: _Stub = run_service_pb2_grpc.RunServiceStub
_WAITS: _Stub = wait_service_pb2_grpc.WaitServiceStub
_SCHEDULES: _Stub = schedule_service_pb2_grpc.ScheduleServiceStub
_QUEUES: _Stub = queue_service_pb2_grpc.QueueServiceStub
_TRANSIENT = (*GONE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A watch reconnects after its last event while the frontend is unreachable, for
# this many seconds in a row at most, backing off from WATCH_BACKOFF.
WATCH_RETRY_SECONDS = resend.RESEND_SECONDS
WATCH_BACKOFF = 0.1


class Frontend:
    """A connection to the frontend(s) at address (else $CAIRN_ADDRESS, else
    127.0.0.1:7373: one host:port, a comma-separated list, or a gRPC target) for
    namespace (else $CAIRN_NAMESPACE, else "default"), sending the API key
    api_key (else $CAIRN_API_KEY, else `cairn dev`'s admin.key in $CAIRN_DEV_DIR
    or ./.cairn, else none; cairn.credentials) on every call, over TLS when a
    CA or client certificate is given (tls_*, else CAIRN_TLS_*). A malformed key
    or an unreadable TLS file is a ValueError naming where it came from.

    The channel opens at the first call, which waits up to
    channel.FIRST_CONTACT_SECONDS for a frontend to connect and is Unreachable,
    with gRPC's reason, when none does: a mistaken address or no `cairn dev` is
    said at once. Once one has answered, calls are sent again after
    UNAVAILABLE for up to 30 s (channel.call; the channel retries idempotent
    ones on another frontend, cairn.addresses.client_channel_options), so a
    restart goes unnoticed. Use it with `with`."""

    def __init__(
        self,
        address: str | None = None,
        namespace: str | None = None,
        api_key: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        self.address = addresses.check_address(
            address or os.environ.get("CAIRN_ADDRESS") or addresses.DEFAULT_ADDRESS
        )
        self.namespace = namespace or os.environ.get("CAIRN_NAMESPACE") or DEFAULT_NAMESPACE
        self.api_key = credentials.resolve_api_key(api_key, "--api-key")
        self.tls = credentials.client_tls(tls_ca, tls_cert, tls_key, tls_server_name)
        self._channel: grpc.Channel | None = None
        self._reached = False  # a frontend has answered: later channels skip first_contact

    @property
    def reached(self) -> bool:
        """Whether a frontend has answered this client (its channel connected)."""
        return self._reached

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel (a later call opens a new one)."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            channel.close()

    def _open(self) -> grpc.Channel:
        """The channel, opened at the first call: Unreachable when no frontend
        connects within channel.FIRST_CONTACT_SECONDS (first_contact)."""
        if self._channel is None:
            channel = open_channel(self.address, self.api_key, self.tls)
            if not self._reached:
                why = first_contact(channel)
                if why is not None:
                    channel.close()
                    raise Unreachable(why, grpc.StatusCode.UNAVAILABLE)
                self._reached = True
            self._channel = channel
        return self._channel

    def _runs(self) -> Any:
        return _RUNS(self._open())

    def _waits(self) -> Any:
        return _WAITS(self._open())

    def _schedules(self) -> Any:
        return _SCHEDULES(self._open())

    def _queues(self) -> Any:
        return _QUEUES(self._open())

    def _call(
        self,
        method: Callable[..., R],
        request: Any,
        timeout: float = RPC_TIMEOUT,
        repeated: Callable[[grpc.RpcError], R | None] | None = None,
    ) -> R:
        """method(request), sent again after UNAVAILABLE when that is safe
        (channel.call); a refusal as FrontendError."""
        return call(method, request, timeout, repeated)

    def channel(self) -> grpc.Channel:
        """The channel, for commands kept in their own module (cairn_cli/keys.py)."""
        return self._open()

    call = _call  # the same for them: a refusal as FrontendError

    # ---- runs ----------------------------------------------------------------------------

    def trigger(
        self, task: str, payload: Any = None, idempotency_key: str | None = None, **options: Any
    ) -> RunJSON:
        """TriggerRun. options: delay, ttl, max_duration (seconds), priority, tags,
        metadata (a JSON object), concurrency_key. Without an idempotency key
        the trigger carries a new request id (a UUID), kept when it is sent
        again, so a retried trigger never makes a second run."""
        task_id = _task_id(task)
        request = run_service_pb2.TriggerRunRequest(
            namespace=self.namespace,
            task_id=task_id,
            payload=_payload(f"payload for task '{task_id}'", payload),
            idempotency_key=idempotency_key or "",
            request_id="" if idempotency_key else resend.new_request_id(),
        )
        opts = _trigger_options(**options)
        if opts.ByteSize():
            request.options.CopyFrom(opts)
        response: run_service_pb2.TriggerRunResponse = self._call(self._runs().TriggerRun, request)
        return run_to_dict(triggered_run(response, request.payload))

    def get_run(self, run_id: str) -> RunJSON:
        """GetRun: the run with its attempts and steps."""
        request = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
        response: run_service_pb2.GetRunResponse = self._call(self._runs().GetRun, request)
        return run_to_dict(response.run)

    def list_runs(
        self,
        task: str | None = None,
        status: list[str] | None = None,
        limit: int = 20,
        tag: str | None = None,
        parent_run_id: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[RunSummaryJSON]:
        """ListRuns, newest first, following pages up to limit runs: summaries,
        without attempts, steps and events (ListRuns does not load them). Runs
        on a queue, created at or after created_after and before created_before
        (aware datetimes), when given."""
        if limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        request = run_service_pb2.ListRunsRequest(
            namespace=self.namespace,
            task_id=_task_id(task) if task is not None else "",
            statuses=[RUN_STATUS_BY_NAME[s.lower()] for s in status or []],
            tag=tag or "",
            parent_run_id=parent_run_id or "",
            queue=_queue_name(queue) if queue is not None else "",
        )
        for field, when in (("created_after", created_after), ("created_before", created_before)):
            if when is not None:
                getattr(request, field).FromDatetime(when.astimezone(UTC))
        runs: list[RunSummaryJSON] = []
        while len(runs) < limit:
            request.page_size = min(MAX_PAGE, limit - len(runs))
            response: run_service_pb2.ListRunsResponse = self._call(self._runs().ListRuns, request)
            runs.extend(run_summary_to_dict(r) for r in response.runs)
            if not response.next_page_token or not response.runs:
                break
            request.page_token = response.next_page_token
        return runs[:limit]

    def replay_run(self, run_id: str) -> RunJSON:
        """ReplayRun: the new run (its replay_of is run_id)."""
        request = run_service_pb2.ReplayRunRequest(namespace=self.namespace, run_id=run_id)
        response: run_service_pb2.ReplayRunResponse = self._call(self._runs().ReplayRun, request)
        return run_to_dict(response.run)

    def list_workers(self) -> list[WorkerJSON]:
        """ListWorkers: the namespace's workers, most recently seen first."""
        request = queue_service_pb2.ListWorkersRequest(namespace=self.namespace)
        response: queue_service_pb2.ListWorkersResponse = self._call(self._queues().ListWorkers, request)
        return [worker_to_dict(w) for w in response.workers]

    def cancel_run(self, run_id: str, reason: str = "") -> RunJSON:
        """CancelRun: the run as canceled (also when a cancel sent again after
        UNAVAILABLE finds that its first sending had canceled it)."""
        request = run_service_pb2.CancelRunRequest(namespace=self.namespace, run_id=run_id, reason=reason)

        def landed(exc: grpc.RpcError) -> run_service_pb2.CancelRunResponse | None:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                return None
            got = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
            run = self._call(self._runs().GetRun, got).run
            return (
                run_service_pb2.CancelRunResponse(run=run)
                if run.status == common_pb2.RUN_STATUS_CANCELED
                else None
            )

        response: run_service_pb2.CancelRunResponse = self._call(
            self._runs().CancelRun, request, repeated=landed
        )
        return run_to_dict(response.run)

    def watch_run(self, run_id: str, after_event_id: int = 0) -> Iterator[RunUpdateJSON]:
        """WatchRun: the run's updates as they happen (after the event
        after_event_id), ending with the one that ends the run. An unreachable
        frontend (a restart, one of a list going away, one ending its streams as
        it shuts down) is reconnected to after the last event, for
        WATCH_RETRY_SECONDS in a row at most; leaving the loop cancels the call."""
        if after_event_id < 0:
            raise ValueError(f"--after must be an event id >= 0, got {after_event_id}")
        after, failing_since, backoff = after_event_id, None, WATCH_BACKOFF
        while True:
            request = run_service_pb2.WatchRunRequest(
                namespace=self.namespace, run_id=run_id, after_event_id=after
            )
            opened = time.monotonic()
            stream = self._runs().WatchRun(request)
            try:
                for response in stream:
                    for message in response.updates:
                        update = run_update_to_dict(message)
                        after, failing_since, backoff = update["event"]["id"], None, WATCH_BACKOFF
                        yield update
                        if update["done"]:
                            return
                return
            except grpc.RpcError as exc:
                now = time.monotonic()
                if failing_since is None or now - opened >= WATCH_RETRY_SECONDS:
                    failing_since = opened  # reset by an update, or a stream that stayed up
                failure = error(exc, now - failing_since)
                if not isinstance(failure, Unreachable) or now - failing_since >= WATCH_RETRY_SECONDS:
                    raise failure from None
            finally:
                stream.cancel()
            time.sleep(resend.jittered(backoff))
            backoff = resend.next_delay(backoff)

    def run_logs(self, run_id: str, follow: bool = False) -> Iterator[LogLineJSON]:
        """ListRunLogs, page after page: the lines the run logged so far; with
        follow, then every new line as it is logged (WatchRun after the last
        line read), until the run ends."""
        after = 0
        while True:
            request = run_service_pb2.ListRunLogsRequest(
                namespace=self.namespace, run_id=run_id, after_id=after, page_size=MAX_PAGE
            )
            page: run_service_pb2.ListRunLogsResponse = self._call(self._runs().ListRunLogs, request)
            yield from (log_line_to_dict(line) for line in page.lines)
            after = page.last_id
            if not page.more:
                break
        if follow:
            for update in self.watch_run(run_id, after_event_id=after):
                if update["event"]["type"] == "log":
                    yield log_line_from_event(update["event"])

    def wait_run(self, run_id: str, timeout: float | None = None) -> RunJSON:
        """Polls WaitRun until the run is in a terminal status. TimeoutError naming
        the run when timeout seconds pass first; a briefly unreachable frontend is
        retried within the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.1
        last: RunJSON | None = None
        while True:
            per_call = WAIT_PER_CALL
            if deadline is not None:
                per_call = min(per_call, deadline - time.monotonic())
                if per_call <= 0:
                    status = f" (status: {last['status']})" if last else ""
                    raise TimeoutError(f"run {run_id} did not finish within {timeout:g}s{status}")
            wait = Duration()
            wait.FromNanoseconds(max(1, round(per_call * 1e9)))
            request = run_service_pb2.WaitRunRequest(namespace=self.namespace, run_id=run_id, timeout=wait)
            try:
                response: run_service_pb2.WaitRunResponse = self._runs().WaitRun(
                    request, timeout=per_call + 10
                )
            except grpc.RpcError as exc:
                failure = error(exc)
                if failure.code not in _TRANSIENT:
                    raise failure from None
                pause, delay = resend.jittered(delay), resend.next_delay(delay)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise failure from None
                time.sleep(pause)
                continue
            delay = 0.1
            last = run_to_dict(response.run)
            if response.done or last["status"] in TERMINAL_RUN_STATUSES:
                return last

    # ---- events and wait tokens ----------------------------------------------------------

    def send_event(
        self, name: str, payload: Any = None, *, run_id: str | None = None, key: str | None = None
    ) -> SendEventJSON:
        """SendEvent: to run_id, or to every run waiting for name and key."""
        if not name:
            raise ValueError(f"send_event: name must be a non-empty string, got {name!r}")
        request = wait_service_pb2.SendEventRequest(
            namespace=self.namespace,
            run_id=run_id or "",
            name=name,
            key=key or "",
            payload=_payload(f"payload of event '{name}'", payload),
        )
        response: wait_service_pb2.SendEventResponse = self._call(self._waits().SendEvent, request)
        return send_event_to_dict(response)

    def create_token(self, timeout: float | None = None) -> TokenJSON:
        """CreateWaitToken, timing out timeout seconds after creation (None: never)."""
        request = wait_service_pb2.CreateWaitTokenRequest(namespace=self.namespace)
        if timeout is not None:
            request.timeout.CopyFrom(_duration("timeout", timeout, allow_zero=False))
        response: wait_service_pb2.CreateWaitTokenResponse = self._call(
            self._waits().CreateWaitToken, request
        )
        return token_to_dict(response.token)

    def complete_token(self, token_id: str, payload: Any = None) -> TokenJSON:
        """CompleteWaitToken with payload (a completion sent again after
        UNAVAILABLE, refused as done, is ours when the token holds its payload)."""
        request = wait_service_pb2.CompleteWaitTokenRequest(
            namespace=self.namespace,
            token_id=token_id,
            payload=_payload(f"payload for token {token_id}", payload),
        )

        def landed(exc: grpc.RpcError) -> wait_service_pb2.CompleteWaitTokenResponse | None:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                return None
            got = wait_service_pb2.GetWaitTokenRequest(namespace=self.namespace, token_id=token_id)
            token = self._call(self._waits().GetWaitToken, got).token
            done = token.status == wait_service_pb2.WAIT_TOKEN_STATUS_COMPLETED
            return (
                wait_service_pb2.CompleteWaitTokenResponse(token=token)
                if done and token.payload == request.payload
                else None
            )

        response: wait_service_pb2.CompleteWaitTokenResponse = self._call(
            self._waits().CompleteWaitToken, request, repeated=landed
        )
        return token_to_dict(response.token)

    def get_token(self, token_id: str) -> TokenJSON:
        """GetWaitToken."""
        request = wait_service_pb2.GetWaitTokenRequest(namespace=self.namespace, token_id=token_id)
        response: wait_service_pb2.GetWaitTokenResponse = self._call(self._waits().GetWaitToken, request)
        return token_to_dict(response.token)

    # ---- schedules -----------------------------------------------------------------------

    def create_schedule(
        self,
        schedule_id: str,
        task: str,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        deduplication_key: str | None = None,
    ) -> ScheduleJSON:
        """CreateSchedule."""
        request = schedule_service_pb2.CreateScheduleRequest(
            namespace=self.namespace,
            schedule_id=schedule_id,
            task_id=_task_id(task),
            cron=cron,
            timezone=timezone or "",
            payload=_payload(f"payload for schedule '{schedule_id}'", payload),
            deduplication_key=deduplication_key or "",
        )
        response: schedule_service_pb2.CreateScheduleResponse = self._call(
            self._schedules().CreateSchedule, request
        )
        return schedule_to_dict(response.schedule)

    def list_schedules(self, task: str | None = None) -> list[ScheduleJSON]:
        """ListSchedules, by id, optionally of one task."""
        request = schedule_service_pb2.ListSchedulesRequest(
            namespace=self.namespace, task_id=_task_id(task) if task is not None else ""
        )
        response: schedule_service_pb2.ListSchedulesResponse = self._call(
            self._schedules().ListSchedules, request
        )
        return [schedule_to_dict(s) for s in response.schedules]

    def pause_schedule(self, schedule_id: str) -> ScheduleJSON:
        """PauseSchedule."""
        request = schedule_service_pb2.PauseScheduleRequest(namespace=self.namespace, schedule_id=schedule_id)
        response: schedule_service_pb2.PauseScheduleResponse = self._call(
            self._schedules().PauseSchedule, request
        )
        return schedule_to_dict(response.schedule)

    def resume_schedule(self, schedule_id: str) -> ScheduleJSON:
        """ResumeSchedule."""
        request = schedule_service_pb2.ResumeScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        response: schedule_service_pb2.ResumeScheduleResponse = self._call(
            self._schedules().ResumeSchedule, request
        )
        return schedule_to_dict(response.schedule)

    def delete_schedule(self, schedule_id: str) -> None:
        """DeleteSchedule."""
        request = schedule_service_pb2.DeleteScheduleRequest(
            namespace=self.namespace, schedule_id=schedule_id
        )
        gone = schedule_service_pb2.DeleteScheduleResponse()
        self._call(
            self._schedules().DeleteSchedule,
            request,
            repeated=lambda exc: gone if exc.code() == grpc.StatusCode.NOT_FOUND else None,
        )

    # ---- queues --------------------------------------------------------------------------

    def update_queue(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        rate_limit: tuple[int, float] | None = None,
        max_depth: int | None = None,
    ) -> QueueJSON:
        """UpdateQueue; None keeps a setting. rate_limit is (limit, period seconds),
        a limit of 0 removing it."""
        name = _queue_name(name)
        request = queue_service_pb2.UpdateQueueRequest(namespace=self.namespace, name=name)
        if concurrency_limit is not None:
            request.concurrency_limit = _limit(f"queue {name!r}: concurrency_limit", concurrency_limit)
        if rate_limit is not None:
            limit, period = rate_limit
            request.rate_limit.limit = _limit(f"queue {name!r}: rate_limit limit", limit)
            if limit:
                request.rate_limit.period.CopyFrom(
                    _duration(f"queue {name!r}: rate_limit period", period, allow_zero=False)
                )
        if max_depth is not None:
            request.max_depth = _limit(f"queue {name!r}: max_depth", max_depth)
        response: queue_service_pb2.UpdateQueueResponse = self._call(self._queues().UpdateQueue, request)
        return queue_to_dict(response.queue)

    def list_queues(self) -> list[QueueJSON]:
        """ListQueues, by name, with depth and running counts."""
        request = queue_service_pb2.ListQueuesRequest(namespace=self.namespace)
        response: queue_service_pb2.ListQueuesResponse = self._call(self._queues().ListQueues, request)
        return [queue_to_dict(q) for q in response.queues]

    def pause_queue(self, name: str) -> QueueJSON:
        """PauseQueue."""
        request = queue_service_pb2.PauseQueueRequest(namespace=self.namespace, name=_queue_name(name))
        response: queue_service_pb2.PauseQueueResponse = self._call(self._queues().PauseQueue, request)
        return queue_to_dict(response.queue)

    def resume_queue(self, name: str) -> QueueJSON:
        """ResumeQueue."""
        request = queue_service_pb2.ResumeQueueRequest(namespace=self.namespace, name=_queue_name(name))
        response: queue_service_pb2.ResumeQueueResponse = self._call(self._queues().ResumeQueue, request)
        return queue_to_dict(response.queue)
