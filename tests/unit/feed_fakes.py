"""In-memory stand-ins for the tests of services/frontend/run_feeds.py: a run's
event log read like history's ListRunEvents, a RunFeeds on it, and a watcher
doing what handlers.watch_run does with its subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.frontend.run_feeds import RunFeed, RunFeeds, Subscription
from services.frontend.run_watch import RunWatcher

NS, RUN = "default", "run-1"
TIMEOUT = 5.0


class History:
    """The run's event log in memory, read like history's ListRunEvents; counts
    the reads. `progress` is set at every read and every append (tests wait on
    it with until()). With `hold` set, the next read takes its answer, sets
    `held` and waits for `hold` before returning; with `fail` set, reads raise it."""

    def __init__(self) -> None:
        self.log: list[rpb.RunUpdate] = []
        self.calls = 0
        self.read_at: list[float] = []  # the loop's time of each read
        self.progress = asyncio.Event()
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()
        self.fail: BaseException | None = None
        self.ended: bool | None = None  # what reads say of the run's end (None: from the log)

    def append(self, done: bool = False) -> int:
        event_id = len(self.log) + 1
        self.log.append(rpb.RunUpdate(event=cpb.RunEvent(id=event_id, type="step"), done=done))
        self.progress.set()
        return event_id

    async def read(self, request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
        assert (request.namespace, request.run_id) == (NS, RUN)
        self.calls += 1
        self.read_at.append(asyncio.get_running_loop().time())
        self.progress.set()
        if self.fail is not None:
            raise self.fail
        after = [u for u in self.log if u.event.id > request.after_id]
        page = after[: request.limit]
        answer = hpb.ListRunEventsResponse(
            updates=page,
            last_id=page[-1].event.id if page else request.after_id,
            more=len(after) > len(page),
            ended=any(u.done for u in self.log) if self.ended is None else self.ended,
        )
        hold, self.hold = self.hold, None
        if hold is not None:
            self.held.set()
            await hold.wait()
        return answer


class Setup:
    def __init__(
        self, batch: int = 100, reread: float = 60.0, pace: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        self.history = History()
        self.watcher = RunWatcher(bus=None)
        self.feeds = RunFeeds(self.watcher, self.history.read, batch, reread, pace)
        self.batch = batch

    def notify(self) -> None:
        """History's notice that the run logged an event."""
        self.watcher.on_logged({"run_id": RUN, "namespace": NS})

    def followed(self) -> bool:
        return RUN in self.watcher._followers

    def feed(self) -> RunFeed | None:
        return self.feeds._feeds.get((NS, RUN))

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                self.history.progress.clear()
                await self.history.progress.wait()


class Watcher:
    """What handlers.watch_run does with its subscription: reads the log from its
    cursor until caught up, starts the feed there, reads again while the feed
    needs more, then takes the feed's updates after its cursor, to the done one
    (the run's end is always seen as a done update here). `ids` are the events
    it passed on, `live` is set once it takes the feed's."""

    def __init__(self, setup: Setup, cursor: int) -> None:
        self.setup = setup
        self.ids: list[int] = []
        self.live = asyncio.Event()
        self.sub: Subscription | None = None
        self.task = asyncio.create_task(self._watch(cursor))

    def _pass_on(self, update: rpb.RunUpdate) -> None:
        self.ids.append(update.event.id)
        self.setup.history.progress.set()

    async def _watch(self, cursor: int) -> None:
        feeds, history = self.setup.feeds, self.setup.history
        sub = self.sub = await feeds.subscribe(NS, RUN)
        try:
            while True:
                page = await history.read(
                    hpb.ListRunEventsRequest(
                        namespace=NS, run_id=RUN, after_id=cursor, limit=self.setup.batch
                    )
                )
                for update in page.updates:
                    self._pass_on(update)
                    if update.done:
                        return
                cursor = page.last_id
                if page.more:
                    continue
                sub.start(cursor)
                if cursor >= (sub.needs() or 0):
                    break
            self.live.set()
            while True:
                fed = await sub.get()
                if fed is None or fed.event.id <= cursor:
                    continue
                self._pass_on(fed)
                cursor = fed.event.id
                if fed.done:
                    return
        finally:
            feeds.unsubscribe(sub)


async def get(sub: Subscription) -> rpb.RunUpdate | None:
    return await asyncio.wait_for(sub.get(), TIMEOUT)


async def ended(task: asyncio.Task[Any] | None) -> None:
    """Waits for the task to end, however it ends."""
    assert task is not None
    await asyncio.wait({task}, timeout=TIMEOUT)
    assert task.done()
