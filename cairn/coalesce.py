"""Group commit for calls: items submitted while a call is in flight are sent
together, as one batch call, when it returns. An item submitted while nothing
is in flight goes at once as its own call, so a quiet caller waits for nothing
and a busy one makes one call per batch instead of one per item. Used by the
worker SDK (step records, attempt ends) and by the frontend (triggers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cairn.limits import COALESCED_BATCH

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Item(Generic[T]):
    value: T
    timeout: float | None
    future: asyncio.Future[Any]


class Coalescer(Generic[T, R]):
    """Sends items one call at a time: alone with send_one(item, timeout), or
    several with send_many(items, timeout), which returns one result or
    exception per item, in order (raising fails every item of the batch). A
    batch call gets the longest timeout of its items."""

    def __init__(
        self,
        send_one: Callable[[T, float | None], Awaitable[R]],
        send_many: Callable[[list[T], float | None], Awaitable[list[R | BaseException]]],
        max_batch: int = COALESCED_BATCH,
    ) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._max_batch = max_batch
        self._pending: list[_Item[T]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, value: T, timeout: float | None = None) -> R:
        """The item's own result, or its own error, as if it had been sent alone."""
        return await self.enqueue(value, timeout)

    def enqueue(self, value: T, timeout: float | None = None) -> asyncio.Future[R]:
        """Queues the item now, after every item queued before it, and returns
        the future of its result (submit's, without waiting)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(value, timeout, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = [i for i in self._pending[: self._max_batch] if not i.future.done()]
                del self._pending[: self._max_batch]
                if len(batch) == 1:
                    await self._one(batch[0])
                elif batch:
                    await self._many(batch)
        finally:
            self._flusher = None

    async def _one(self, item: _Item[T]) -> None:
        try:
            result = await self._send_one(item.value, item.timeout)
        except Exception as exc:  # the item's own call failed: its caller gets the error
            _settle(item, exc=exc)
        else:
            _settle(item, result)

    async def _many(self, batch: list[_Item[T]]) -> None:
        timeouts = [i.timeout for i in batch if i.timeout is not None]
        try:
            results = await self._send_many([i.value for i in batch], max(timeouts) if timeouts else None)
            if len(results) != len(batch):
                raise RuntimeError(f"a batch call answered {len(results)} results for {len(batch)} items")
        except Exception as exc:  # the whole call failed: every item did, each caller sees it
            for item in batch:
                _settle(item, exc=exc)
            return
        for item, result in zip(batch, results):
            if isinstance(result, BaseException):
                _settle(item, exc=result)
            else:
                _settle(item, result)


def _settle(item: _Item[Any], result: Any = None, exc: BaseException | None = None) -> None:
    if item.future.done():  # its caller gave up (canceled)
        return
    if exc is not None:
        item.future.set_exception(exc)
    else:
        item.future.set_result(result)
