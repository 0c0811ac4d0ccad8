"""Clients for applications: trigger runs, read, list, cancel and wait for them.
AsyncClient for asyncio code; Client, the same methods, for synchronous code."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn import payloads
from cairn.run_json import run_to_dict
from cairn.statuses import RUN_STATUS_BY_NAME, TERMINAL_RUN_STATUSES
from cairn.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc

from worker_sdk._grpc import (call_mapped, code_of, open_channel, resolve_address,
                              resolve_namespace, to_cairn_error)
from worker_sdk.errors import RunFailedError
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
        return cls(id=d["id"], task=d["task"], status=d["status"], output=d["output"],
                   error=d["error"], attempts=d["attempts"], steps=d["steps"], raw=d)

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal status, which never changes again."""
        return self.status in TERMINAL_RUN_STATUSES


def _task_id(task: str | Task) -> str:
    if isinstance(task, Task):
        return task.id
    if isinstance(task, str) and task:
        return task
    raise TypeError(f"task must be a task id string or a Task, got {task!r}")


def _statuses(status: str | list[str] | None) -> list[int]:
    if status is None:
        return []
    names = [status] if isinstance(status, str) else list(status)
    out = []
    for name in names:
        value = RUN_STATUS_BY_NAME.get(str(name).lower())
        if value is None:
            raise ValueError(f"status {name!r} is not a run status; use one of "
                             f"{', '.join(sorted(RUN_STATUS_BY_NAME))}")
        out.append(value)
    return out


class AsyncClient:
    """Talks to the frontend's RunService. address: argument, else $CAIRN_ADDRESS,
    else 127.0.0.1:7373; namespace: argument, else $CAIRN_NAMESPACE, else
    "default". rpc_timeout bounds each call except the waits. Use it with
    `async with`, or call close()."""

    def __init__(self, address: str | None = None, namespace: str | None = None,
                 rpc_timeout: float = 30.0) -> None:
        self.address = resolve_address(address)
        self.namespace = resolve_namespace(namespace)
        self.rpc_timeout = rpc_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: run_service_pb2_grpc.RunServiceStub | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; the client can be used again afterwards (it reconnects)."""
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    def _service(self) -> run_service_pb2_grpc.RunServiceStub:
        if self._stub is None:
            self._channel = open_channel(self.address)
            self._stub = run_service_pb2_grpc.RunServiceStub(self._channel)
        return self._stub

    async def trigger(self, task: str | Task, payload: Any = None,
                      idempotency_key: str | None = None) -> Run:
        """Starts a run of task (an id or a Task) with payload, which must be
        JSON-serialisable. With idempotency_key, a second trigger returns the first run."""
        task_id = _task_id(task)
        try:
            data = payloads.encode_json(payload)
        except payloads.PayloadError as exc:
            raise payloads.PayloadError(f"payload for task '{task_id}': {exc}") from None
        request = run_service_pb2.TriggerRunRequest(
            namespace=self.namespace, task_id=task_id,
            payload=common_pb2.Payload(data=data, encoding=payloads.JSON),
            idempotency_key=idempotency_key or "")
        response = await call_mapped(self._service().TriggerRun, request, self.rpc_timeout)
        return Run.from_proto(response.run)

    async def get(self, run_id: str) -> Run:
        """The run with its attempts and steps. NotFoundError when unknown."""
        request = run_service_pb2.GetRunRequest(namespace=self.namespace, run_id=run_id)
        response = await call_mapped(self._service().GetRun, request, self.rpc_timeout)
        return Run.from_proto(response.run)

    async def list(self, task: str | Task | None = None, status: str | list[str] | None = None,
                   limit: int = 50) -> list[Run]:
        """Up to limit runs, newest first, optionally of one task and in the given
        statuses (lowercase names such as "failed"), following pages as needed."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        request = run_service_pb2.ListRunsRequest(
            namespace=self.namespace, task_id=_task_id(task) if task is not None else "",
            statuses=_statuses(status))
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
        request = run_service_pb2.CancelRunRequest(namespace=self.namespace, run_id=run_id,
                                                   reason=reason)
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
            request = run_service_pb2.WaitRunRequest(namespace=self.namespace, run_id=run_id,
                                                     timeout=wait)
            try:
                response = await self._service().WaitRun(request, timeout=per_call + 10)
            except grpc.RpcError as exc:
                if code_of(exc) not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED):
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

    async def trigger_and_wait(self, task: str | Task, payload: Any = None,
                               timeout: float | None = None,
                               idempotency_key: str | None = None) -> Run:
        """Triggers a run and waits for it. Returns the completed run; raises
        RunFailedError (holding the run) when it ended otherwise."""
        run = await self.trigger(task, payload, idempotency_key=idempotency_key)
        run = await self.wait(run.id, timeout=timeout)
        if run.status != "completed":
            raise RunFailedError(run)
        return run


class Client:
    """The AsyncClient's methods for synchronous code. It runs a private event
    loop in a background thread; call it from ordinary (non-async) code, and use
    AsyncClient inside async code. Use it with `with`, or call close()."""

    def __init__(self, address: str | None = None, namespace: str | None = None,
                 rpc_timeout: float = 30.0) -> None:
        self._async = AsyncClient(address, namespace, rpc_timeout)
        self.address = self._async.address
        self.namespace = self._async.namespace
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cairn-client",
                                        daemon=True)
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

    def trigger(self, task: str | Task, payload: Any = None,
                idempotency_key: str | None = None) -> Run:
        """See AsyncClient.trigger."""
        return self._call(self._async.trigger(task, payload, idempotency_key))

    def get(self, run_id: str) -> Run:
        """See AsyncClient.get."""
        return self._call(self._async.get(run_id))

    def list(self, task: str | Task | None = None, status: str | list[str] | None = None,
             limit: int = 50) -> list[Run]:
        """See AsyncClient.list."""
        return self._call(self._async.list(task, status, limit))

    def cancel(self, run_id: str, reason: str = "") -> Run:
        """See AsyncClient.cancel."""
        return self._call(self._async.cancel(run_id, reason))

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """See AsyncClient.wait."""
        return self._call(self._async.wait(run_id, timeout))

    def trigger_and_wait(self, task: str | Task, payload: Any = None,
                         timeout: float | None = None,
                         idempotency_key: str | None = None) -> Run:
        """See AsyncClient.trigger_and_wait."""
        return self._call(self._async.trigger_and_wait(task, payload, timeout,
                                                       idempotency_key))
