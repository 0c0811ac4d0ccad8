"""SharedReads: identical ListRunEvents calls in flight at once share one call
(the watchers of a run woken by one notice), different ones do not, a watcher
that leaves does not cancel the read for the others, and an error reaches all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from cairn.internal.v1 import history_service_pb2 as hpb
from services.common.errors import ServiceError
from services.frontend.backend import DEADLINE
from services.frontend.shared_reads import SharedReads


class Backend:
    """Answers ListRunEvents once released, counting calls."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[Any] = []
        self.release = asyncio.Event()
        self.error = error

    async def call(self, target: str, method: str, request: Any, timeout: float | None = None) -> Any:
        self.calls.append((target, method, request.after_id))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return hpb.ListRunEventsResponse(last_id=request.after_id + 1)


def read(after: int) -> hpb.ListRunEventsRequest:
    return hpb.ListRunEventsRequest(namespace="default", run_id="r", after_id=after, limit=100)


def test_fifty_watchers_at_one_point_of_the_log_cost_one_read() -> None:
    async def main() -> None:
        backend = Backend()
        reads = SharedReads(backend)  # type: ignore[arg-type]
        same = [asyncio.create_task(reads.list_run_events(read(7))) for _ in range(50)]
        other = asyncio.create_task(reads.list_run_events(read(9)))
        await asyncio.sleep(0)
        backend.release.set()
        answers = await asyncio.gather(*same, other)
        assert [a.last_id for a in answers] == [8] * 50 + [10]
        assert backend.calls == [("history", "ListRunEvents", 7), ("history", "ListRunEvents", 9)]
        again = await reads.list_run_events(read(7))  # the first read is over: a new one
        assert again.last_id == 8 and len(backend.calls) == 3

    asyncio.run(main())


def test_a_watcher_that_leaves_does_not_cancel_the_read_for_the_others() -> None:
    async def main() -> None:
        backend = Backend()
        reads = SharedReads(backend)  # type: ignore[arg-type]
        leaving = asyncio.create_task(reads.list_run_events(read(1)))
        staying = asyncio.create_task(reads.list_run_events(read(1)))
        await asyncio.sleep(0)
        leaving.cancel()
        backend.release.set()
        assert (await staying).last_id == 2
        assert leaving.cancelled() and len(backend.calls) == 1

    asyncio.run(main())


def test_an_error_reaches_every_watcher_of_the_read() -> None:
    async def main() -> None:
        backend = Backend(ServiceError(grpc.StatusCode.NOT_FOUND, "run r not found"))
        reads = SharedReads(backend)  # type: ignore[arg-type]
        waiting = [asyncio.create_task(reads.list_run_events(read(0))) for _ in range(3)]
        await asyncio.sleep(0)
        backend.release.set()
        for task in waiting:
            with pytest.raises(ServiceError, match="not found"):
                await task

    asyncio.run(main())


def test_a_shared_read_is_not_bounded_by_the_deadline_of_the_caller_that_began_it() -> None:
    async def main() -> None:
        seen: list[float | None] = []

        class Deadlines(Backend):
            async def call(self, target: str, method: str, request: Any, timeout: float | None = None) -> Any:
                seen.append(DEADLINE.get())
                return await super().call(target, method, request, timeout)

        backend = Deadlines()
        reads = SharedReads(backend)  # type: ignore[arg-type]
        DEADLINE.set(time.monotonic() - 1)  # the first caller's deadline has passed
        first = asyncio.create_task(reads.list_run_events(read(3)))
        await asyncio.sleep(0)
        backend.release.set()
        assert (await first).last_id == 4
        assert seen == [None]

    asyncio.run(main())
