"""How a run feed ends besides its run's terminal update: when history says the
run ended without one, each watcher goes back to its own reads (told Behind),
never left waiting; when its last watcher falls behind, the feed stops at once
(no reads for nobody); and it reads in a context of its own, not with the first
watcher's deadline. Its memory is bounded in bytes as well as in updates."""

from __future__ import annotations

import asyncio
import time

import pytest
from feed_fakes import NS, RUN, Setup, ended, get

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.frontend import run_feeds
from services.frontend.backend import DEADLINE
from services.frontend.run_feeds import Behind, RunFeed


def test_a_run_that_ended_without_a_terminal_update_sends_its_watchers_back_to_reading() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        s.history.append()
        sub.start(1)
        feed = s.feed()
        assert feed is not None
        s.history.ended = True  # out of band: the run ended, and no update says so
        s.notify()
        with pytest.raises(Behind):
            await get(sub)
        await ended(feed.task)
        assert s.feed() is None and not s.followed()
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_a_feed_whose_last_watcher_fell_behind_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", 2)

    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        feed = s.feed()
        assert feed is not None
        for _ in range(3):
            s.history.append()
        s.notify()
        await ended(feed.task)  # the third update left nobody on the feed
        assert s.feed() is None and not s.followed()
        calls = s.history.calls
        s.history.append()
        s.notify()
        assert [await get(sub), await get(sub)] != [None, None]
        with pytest.raises(Behind):
            await get(sub)
        assert s.history.calls == calls  # nobody reads for the watcher that left
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_the_feed_reads_without_the_first_watchers_deadline() -> None:
    async def main() -> None:
        s = Setup()
        seen: list[float | None] = []
        plain = s.history.read

        async def read(request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
            seen.append(DEADLINE.get())
            return await plain(request)

        DEADLINE.set(time.monotonic() - 1)  # the first watcher's call is long past its deadline
        s.feeds._read = read
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        await s.until(lambda: len(seen) >= 1)
        assert seen == [None]
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_the_memory_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async def unread(request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
            raise AssertionError("no read expected")

        big = [
            rpb.RunUpdate(event=cpb.RunEvent(id=i, type="log", details_json="x" * 400)) for i in range(1, 6)
        ]
        monkeypatch.setattr(run_feeds, "FEED_MEMORY_BYTES", 3 * big[0].ByteSize())
        f = RunFeed((NS, RUN), unread, 100, 60.0)
        f.begin(0, big[:2])
        for update in big[2:]:
            f._deliver(update)
        assert [u.event.id for u in f.kept] == [3, 4, 5] and f.kept_from == 2
        assert f.kept_bytes == sum(u.ByteSize() for u in big[2:])
        assert f.replay(1) is None
        replayed = f.replay(2)
        assert replayed is not None and [u.event.id for u in replayed] == [3, 4, 5]

    asyncio.run(main())
