"""The real Handlers.watch_run against a run's log in memory, under random
interleavings (seeded): up to 12 watchers join at random moments with random
cursors, some read slowly, some break off or are cancelled, notices are lost,
history's answers are delayed, pages are small and the feed's backlog tiny.
Every watcher gets exactly the events after its cursor, in order (up to where it
stopped); none hangs; no feed or followed run is left behind."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from typing import Any, cast

import grpc
import pytest

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.common.errors import ServiceError
from services.frontend import handlers as handlers_mod
from services.frontend import run_feeds
from services.frontend.handlers import Handlers
from services.frontend.run_watch import RunWatcher

NS, RUN = "default", "11111111-1111-1111-1111-111111111111"
SEEDS = 150
DEADLINE_SECONDS = 10.0


async def turns(rng: random.Random, most: int) -> None:
    """Lets other coroutines run for a random number of turns (no wall time)."""
    for _ in range(rng.randint(0, most)):
        await asyncio.sleep(0)


class History:
    """ListRunEvents on an in-memory log, each answer after random turns."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.log: list[rpb.RunUpdate] = []

    async def call(self, backend: str, method: str, request: Any, timeout: float = 15.0) -> Any:
        assert method == "ListRunEvents"
        await turns(self.rng, 6)
        if request.after_id and not any(u.event.id == request.after_id for u in self.log):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "after_event_id: not an event of the run")
        after = [u for u in self.log if u.event.id > request.after_id]
        page = after[: request.limit]
        answer = hpb.ListRunEventsResponse(
            updates=page,
            last_id=page[-1].event.id if page else request.after_id,
            more=len(page) < len(after),
            ended=any(u.done for u in self.log),
        )
        await turns(self.rng, 6)
        return answer


class Context:
    async def send_initial_metadata(self, metadata: Any) -> None:
        pass


async def one(seed: int) -> str | None:
    rng = random.Random(seed)
    history = History(rng)
    watcher = RunWatcher(bus=None)
    handlers = Handlers(history, watcher, 1.0, feed_pace=(0.001, 0.0002))  # type: ignore[arg-type]
    handlers.feeds._reread = 0.01  # covers the lost notices quickly
    total = rng.randint(5, 60)

    async def log() -> None:
        next_id = 1
        for i in range(total):
            await turns(rng, 8)
            done = i == total - 1
            event = cpb.RunEvent(id=next_id, type="completed" if done else "step_recorded")
            history.log.append(rpb.RunUpdate(event=event, done=done))
            next_id += rng.choice([1, 1, 1, 2])  # other runs' events take ids too
            if rng.random() < 0.7:  # the rest of the notices are lost
                watcher.on_logged({"run_id": RUN, "namespace": NS})

    seen: dict[int, tuple[int, list[int], bool]] = {}

    async def watch(k: int) -> None:
        await turns(rng, 40)
        cursor = rng.choice([0, *(u.event.id for u in history.log)])
        slow = rng.random() < 0.3
        stop_after = rng.randint(1, 20) if rng.random() < 0.2 else None
        got: list[int] = []
        stopped = stop_after is not None
        request = rpb.WatchRunRequest(namespace=NS, run_id=RUN, after_event_id=cursor)
        stream = cast(AsyncGenerator[Any, None], handlers.watch_run(request, Context()))  # type: ignore[arg-type]
        try:
            async for response in stream:
                if isinstance(response, bytes):  # a feed's message, encoded once for all
                    response = rpb.WatchRunResponse.FromString(response)
                got.extend(u.event.id for u in response.updates)
                if slow:
                    await turns(rng, 20)
                if stop_after is not None and len(got) >= stop_after:
                    break
        except asyncio.CancelledError:
            stopped = True
        finally:
            await stream.aclose()
            seen[k] = (cursor, got, stopped)

    watchers = [asyncio.create_task(watch(k)) for k in range(rng.randint(1, 12))]

    async def cancel_some() -> None:
        for _ in range(2):
            await turns(rng, 60)
            rng.choice(watchers).cancel()

    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            await asyncio.gather(log(), cancel_some(), *watchers, return_exceptions=True)
            while handlers.feeds._feeds or watcher._followers:  # cancelled feeds end at their next turn
                await asyncio.sleep(0)
    except TimeoutError:
        stuck = [k for k, w in enumerate(watchers) if not w.done()]
        return f"seed {seed}: watchers {stuck} hang, or a feed stays: {handlers.feeds._feeds}"
    ids = [u.event.id for u in history.log]
    for k, (cursor, got, stopped) in seen.items():
        expected = [i for i in ids if i > cursor]
        if stopped:
            expected = expected[: len(got)]
        if got != expected:
            return f"seed {seed}: watcher {k} from {cursor} got {got}, expected {expected}"
    return None


@pytest.mark.parametrize("backlog", [1, 3, 1000])
def test_every_watcher_gets_each_event_after_its_cursor_once_in_order(
    backlog: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", backlog)
    monkeypatch.setattr(handlers_mod, "FEED_BACKLOG", backlog)
    monkeypatch.setattr(handlers_mod, "WATCH_BATCH", 3)

    async def main() -> list[str]:
        return [problem for seed in range(SEEDS) if (problem := await one(seed)) is not None]

    assert asyncio.run(main()) == []
