"""Client: the AsyncClient's methods for synchronous code, run on a private
event loop in a background thread."""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack, overload

from worker_sdk._client import AsyncClient, BatchItem
from worker_sdk._grpc import DEFAULT_RPC_TIMEOUT, TLSConfig
from worker_sdk._policies import Queue
from worker_sdk._schedules_queues import AnyTask, _task_id
from worker_sdk._task import Task
from worker_sdk._types import (
    Run,
    RunStatus,
    RunUpdate,
    Schedule,
    SendEventResult,
    TriggerOptions,
    WaitToken,
    WorkerInfo,
)
from worker_sdk.errors import CairnError

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")


async def _in_context(context: contextvars.Context, coro: Coroutine[Any, Any, T]) -> T:
    """coro run in the caller's context (e.g. its current OpenTelemetry span),
    not the background loop's; cancelling this cancels it."""
    return await asyncio.get_running_loop().create_task(coro, context=context)


class Client:
    """The AsyncClient's methods for synchronous code. It runs a private event
    loop in a background thread; call it from ordinary (non-async) code, and use
    AsyncClient inside async code. Arguments as AsyncClient's (api_key and tls too).
    Use it with `with`, or call close()."""

    def __init__(
        self,
        address: str | None = None,
        namespace: str | None = None,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        *,
        api_key: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        self._async = AsyncClient(address, namespace, rpc_timeout, api_key=api_key, tls=tls)
        self.address = self._async.address
        self.namespace = self._async.namespace
        self.api_key = self._async.api_key
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
            raise CairnError("this Client is closed")
        future = asyncio.run_coroutine_threadsafe(_in_context(contextvars.copy_context(), coro), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _iterate(self, updates: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator read on the background loop, one item per next();
        closing the iterator (or leaving a for loop) closes it."""

        async def step() -> T:
            return await anext(updates)

        async def close() -> None:
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                try:
                    item = self._call(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not self._closed:
                self._call(close())

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

    @overload
    def trigger(
        self,
        task: Task[P, R],
        payload: P,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[R]: ...

    @overload
    def trigger(
        self,
        task: str,
        payload: Any = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]: ...

    def trigger(
        self,
        task: str | AnyTask,
        payload: Any = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]:
        """See AsyncClient.trigger."""
        return self._call(self._async.trigger(_task_id(task), payload, idempotency_key, **options))

    def batch_trigger(self, items: Sequence[BatchItem]) -> list[Run[Any]]:
        """See AsyncClient.batch_trigger."""
        return self._call(self._async.batch_trigger(items))

    def get(self, run_id: str) -> Run[Any]:
        """See AsyncClient.get."""
        return self._call(self._async.get(run_id))

    def list(
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
        """See AsyncClient.list."""
        return self._call(
            self._async.list(
                task,
                status,
                limit,
                tag=tag,
                parent_run_id=parent_run_id,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
            )
        )

    def cancel(self, run_id: str, reason: str = "") -> Run[Any]:
        """See AsyncClient.cancel."""
        return self._call(self._async.cancel(run_id, reason))

    def replay(self, run_id: str) -> Run[Any]:
        """See AsyncClient.replay."""
        return self._call(self._async.replay(run_id))

    def wait(self, run_id: str, timeout: float | None = None) -> Run[Any]:
        """See AsyncClient.wait."""
        return self._call(self._async.wait(run_id, timeout))

    def watch(self, run_id: str, after_event_id: int = 0) -> Iterator[RunUpdate]:
        """See AsyncClient.watch: `for update in client.watch(run_id): ...`."""
        return self._iterate(self._async.watch(run_id, after_event_id))

    def watch_runs(
        self, task: str | AnyTask | None = None, tags: Iterable[str] = (), after_event_id: int = 0
    ) -> Iterator[RunUpdate]:
        """See AsyncClient.watch_runs."""
        return self._iterate(self._async.watch_runs(task, tags, after_event_id))

    @overload
    def trigger_and_wait(
        self,
        task: Task[P, R],
        payload: P,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[R]: ...

    @overload
    def trigger_and_wait(
        self,
        task: str,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]: ...

    def trigger_and_wait(
        self,
        task: str | AnyTask,
        payload: Any = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **options: Unpack[TriggerOptions],
    ) -> Run[Any]:
        """See AsyncClient.trigger_and_wait."""
        return self._call(
            self._async.trigger_and_wait(_task_id(task), payload, timeout, idempotency_key, **options)
        )

    def send_event(
        self, name: str, payload: Any = None, *, run_id: str | None = None, key: str | None = None
    ) -> SendEventResult:
        """See AsyncClient.send_event."""
        return self._call(self._async.send_event(name, payload, run_id=run_id, key=key))

    def create_token(
        self, timeout: timedelta | float | None = None, *, idempotency_key: str | None = None
    ) -> WaitToken:
        """See AsyncClient.create_token."""
        return self._call(self._async.create_token(timeout, idempotency_key=idempotency_key))

    def complete_token(self, token_id: str | WaitToken, payload: Any = None) -> WaitToken:
        """See AsyncClient.complete_token."""
        return self._call(self._async.complete_token(token_id, payload))

    def get_token(self, token_id: str | WaitToken) -> WaitToken:
        """See AsyncClient.get_token."""
        return self._call(self._async.get_token(token_id))

    def create_schedule(
        self,
        schedule_id: str,
        task: str | AnyTask,
        cron: str,
        *,
        timezone: str = "UTC",
        payload: Any = None,
        deduplication_key: str | None = None,
    ) -> Schedule:
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

    def list_schedules(self, task: str | AnyTask | None = None) -> builtins.list[Schedule]:
        """See AsyncClient.list_schedules."""
        return self._call(self._async.list_schedules(task))

    def pause_schedule(self, schedule_id: str) -> Schedule:
        """See AsyncClient.pause_schedule."""
        return self._call(self._async.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> Schedule:
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
    ) -> Queue:
        """See AsyncClient.update_queue."""
        return self._call(
            self._async.update_queue(
                name, concurrency_limit=concurrency_limit, rate_limit=rate_limit, max_depth=max_depth
            )
        )

    def list_queues(self) -> builtins.list[Queue]:
        """See AsyncClient.list_queues."""
        return self._call(self._async.list_queues())

    def list_workers(self) -> builtins.list[WorkerInfo]:
        """See AsyncClient.list_workers."""
        return self._call(self._async.list_workers())

    def pause_queue(self, name: str) -> Queue:
        """See AsyncClient.pause_queue."""
        return self._call(self._async.pause_queue(name))

    def resume_queue(self, name: str) -> Queue:
        """See AsyncClient.resume_queue."""
        return self._call(self._async.resume_queue(name))
