"""Waiting for a condition with a deadline, never with a bare sleep: ``wait_for``
from test code, ``wait_for_async`` from coroutines (the service tier); and
``hold``, a condition that must stay true for a while."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _timed_out(message: str, timeout: float, last: Any) -> AssertionError:
    return AssertionError(f"{message or 'condition not met'} (waited {timeout:g} s; last value: {last!r})")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls predicate every `interval` seconds until it returns something truthy,
    and returns that. At the deadline raises AssertionError with `message` and the
    last value. Exceptions of the types in `ignore` count as a falsy result (and
    are reported as the last value); any other exception propagates at once."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(message, timeout, last)
        time.sleep(interval)


def hold(check: Callable[[], Any], duration: float, message: str) -> None:
    """Keeps calling check (which raises AssertionError when the condition it
    guards is broken) for `duration` seconds: a bounded observation that fails at
    once when something happens that must not."""
    end = time.monotonic() + duration

    def still_holds() -> bool:
        check()
        return time.monotonic() >= end

    wait_for(still_holds, duration + 10, interval=0.1, message=message)


async def wait_for_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float,
    interval: float = 0.01,
    message: str = "",
) -> T:
    """wait_for for a coroutine predicate, on the running event loop (which keeps
    serving the in-process servers meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        last = await predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(message, timeout, last)
        await asyncio.sleep(interval)
