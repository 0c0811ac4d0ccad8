"""A run feed's memory: a watcher that joins a live run with a cursor the feed
holds (its start, or one of its last FEED_BACKLOG updates) is served the
updates after it without a history read; with any other cursor it reads."""

from __future__ import annotations

import asyncio

import pytest

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.frontend import run_feeds
from services.frontend.run_feeds import RunFeed, RunFeeds
from services.frontend.run_watch import RunWatcher

NS, RUN = "default", "run-1"


def update(event_id: int) -> rpb.RunUpdate:
    return rpb.RunUpdate(event=cpb.RunEvent(id=event_id, type="step_recorded"))


def ids(updates: list[rpb.RunUpdate] | None) -> list[int] | None:
    return None if updates is None else [u.event.id for u in updates]


async def _unread(request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
    raise AssertionError("no read expected")


def feed() -> RunFeed:
    return RunFeed((NS, RUN), _unread, 100, 60.0)


def test_a_feed_started_from_a_read_of_the_whole_run_replays_from_any_of_its_events() -> None:
    async def main() -> None:
        f = feed()
        f.begin(2, [update(1), update(2)])
        f._deliver(update(3))
        assert ids(f.replay(0)) == [1, 2, 3]
        assert ids(f.replay(2)) == [3]
        assert ids(f.replay(3)) == []
        assert f.replay(7) is None  # not an event it holds: history says whether it is one

    asyncio.run(main())


def test_a_feed_started_mid_run_replays_only_from_its_start_on() -> None:
    async def main() -> None:
        f = feed()
        f.begin(5, None)
        assert ids(f.replay(5)) == []
        f._deliver(update(6))
        assert ids(f.replay(5)) == [6]
        assert f.replay(0) is None
        assert f.replay(4) is None

    asyncio.run(main())


def test_the_memory_keeps_the_last_feed_backlog_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", 3)

    async def main() -> None:
        f = feed()
        f.begin(0, [])
        for i in range(1, 6):
            f._deliver(update(i))
        assert ids(f.replay(2)) == [3, 4, 5]
        assert ids(f.replay(4)) == [5]
        assert f.replay(1) is None
        assert f.replay(0) is None

    asyncio.run(main())


def test_a_read_longer_than_the_memory_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", 2)

    async def main() -> None:
        f = feed()
        f.begin(3, [update(1), update(2), update(3)])
        assert f.replay(0) is None
        assert ids(f.replay(3)) == []

    asyncio.run(main())


def test_a_second_watcher_of_a_live_run_is_served_without_a_read() -> None:
    async def main() -> None:
        reads: list[int] = []
        log = [update(1), update(2)]

        async def read(request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
            reads.append(request.after_id)
            page = [u for u in log if u.event.id > request.after_id]
            return hpb.ListRunEventsResponse(
                updates=page, last_id=page[-1].event.id if page else request.after_id
            )

        feeds = RunFeeds(RunWatcher(bus=None), read, 100, 60.0)
        first = await feeds.subscribe(NS, RUN)
        assert first.replay(0) is None  # the feed has no position yet: it reads
        page = await read(hpb.ListRunEventsRequest(namespace=NS, run_id=RUN, after_id=0))
        first.start(page.last_id, list(page.updates))
        second = await feeds.subscribe(NS, RUN)
        assert ids(second.replay(0)) == [1, 2]
        assert ids(second.replay(1)) == [2]
        feeds.unsubscribe(second)
        feeds.unsubscribe(first)
        assert reads == [0]  # the first watcher's read only: the second read nothing

    asyncio.run(main())
