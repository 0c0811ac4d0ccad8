"""RunFeeds: one reader per watched run on a frontend. Every watcher of a run gets
each update as the same message for one history read per change; a watcher that
joins at any moment (the feed reading, between a read and the next change, before
the feed has a position) gets every update after its own catch-up cursor once; the
feed ends at the update with done, at a failed read (each watcher gets the
failure) or with its last watcher; a watcher that falls FEED_BACKLOG behind is
told so and dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from feed_fakes import NS, RUN, TIMEOUT, Setup, Watcher, ended, get

from cairn.internal.v1 import history_service_pb2 as hpb
from services.common.errors import ServiceError
from services.frontend import run_feeds
from services.frontend.run_feeds import Behind, RunFeeds, Subscription
from services.frontend.run_watch import RunWatcher


def test_fifty_watchers_of_a_run_cost_one_read_per_change_and_share_each_update() -> None:
    async def main() -> None:
        s = Setup()
        subs = [await s.feeds.subscribe(NS, RUN) for _ in range(50)]
        assert len({sub.feed for sub in subs}) == 1 and s.followed()
        for sub in subs:  # each caught up with the (empty) log on its own
            sub.start(0)
        await s.until(lambda: s.history.calls == 1)  # the feed's first read
        s.history.append()
        s.notify()
        got = await asyncio.gather(*(get(sub) for sub in subs))
        assert s.history.calls == 2
        first = got[0]
        assert first is not None and first.event.id == 1
        assert all(update is first for update in got)

        s.history.append()
        s.history.append()
        s.notify()
        s.notify()  # two notices before the feed wakes: still one read
        second = await asyncio.gather(*(get(sub) for sub in subs))
        third = await asyncio.gather(*(get(sub) for sub in subs))
        assert s.history.calls == 3
        for got, expected in ((second, 2), (third, 3)):
            assert got[0] is not None and got[0].event.id == expected
            assert all(update is got[0] for update in got)
        assert all(sub.queue.empty() for sub in subs)
        for sub in subs:
            s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_watchers_joining_at_any_moment_get_every_update_after_their_cursor_once() -> None:
    async def main() -> None:
        s = Setup(batch=2)  # the feed and the watchers read in pages
        a = Watcher(s, 0)
        await asyncio.wait_for(a.live.wait(), TIMEOUT)
        for _ in range(3):
            s.history.append()
        s.notify()
        await s.until(lambda: a.ids == [1, 2, 3])
        feed = s.feed()
        assert feed is not None and feed.position == 3

        # Between the feed's read and the next change: it catches up on its own.
        b = Watcher(s, 0)
        await asyncio.wait_for(b.live.wait(), TIMEOUT)
        assert b.sub is not None and b.sub.needs() == 3 and b.ids == [1, 2, 3]
        s.history.append()
        s.notify()
        await s.until(lambda: a.ids[-1:] == b.ids[-1:] == [4])

        # While the feed reads: its answer (5) was taken before 6 was logged and
        # c and d joined; they read past it themselves, and the feed reads 6 again.
        release = s.history.hold = asyncio.Event()
        s.history.append()
        s.notify()
        await asyncio.wait_for(s.history.held.wait(), TIMEOUT)
        s.history.append()
        s.notify()
        c, d = Watcher(s, 4), Watcher(s, 2)
        await asyncio.wait_for(asyncio.gather(c.live.wait(), d.live.wait()), TIMEOUT)
        assert c.sub is not None and c.sub.needs() == 4 and feed.position == 4
        assert c.ids == [5, 6] and d.ids == [3, 4, 5, 6]
        release.set()
        await s.until(lambda: all(w.ids[-1:] == [6] for w in (a, b, c, d)))

        # Joined after the change, before the feed's read of it.
        s.history.append()
        e = Watcher(s, 6)
        await asyncio.wait_for(e.live.wait(), TIMEOUT)
        s.notify()
        s.history.append(done=True)
        s.notify()
        await asyncio.wait_for(asyncio.gather(*(w.task for w in (a, b, c, d, e))), TIMEOUT)

        everything = list(range(1, 9))
        assert a.ids == b.ids == everything
        assert (c.ids, d.ids, e.ids) == (everything[4:], everything[2:], everything[6:])
        await ended(feed.task)
        assert s.feed() is None and not s.followed()

    asyncio.run(main())


def test_the_first_caught_up_watcher_starts_the_feed_and_an_early_one_behind_it_reads_again() -> None:
    async def main() -> None:
        s = Setup()
        s.history.append()
        s.history.append()
        one = await s.feeds.subscribe(NS, RUN)
        two = await s.feeds.subscribe(NS, RUN)
        assert one.feed is two.feed and one.needs() is None and two.needs() is None

        request = hpb.ListRunEventsRequest(namespace=NS, run_id=RUN, after_id=0, limit=100)
        cursor_two = (await s.history.read(request)).last_id  # two has read to 2 ...
        s.history.append()
        cursor_one = (await s.history.read(request)).last_id  # ... one, after 3 was logged, to 3
        assert (cursor_one, cursor_two) == (3, 2)
        one.start(cursor_one)
        assert one.needs() == 3 and cursor_one >= 3

        two.start(cursor_two)  # the feed keeps its start
        assert one.feed.start == 3
        needs = two.needs()
        assert needs == 3 and cursor_two < needs  # two must read again
        request.after_id = cursor_two
        again = await s.history.read(request)
        assert [u.event.id for u in again.updates] == [3]
        two.start(again.last_id)
        assert again.last_id >= (two.needs() or 0)
        assert one.feed.start == 3

        s.history.append()
        s.notify()
        for sub in (one, two):
            update = await get(sub)
            assert update is not None and update.event.id == 4
        late = await s.feeds.subscribe(NS, RUN)
        assert late.feed is one.feed and late.needs() == 4  # the feed's position when it joined
        for sub in (one, two, late):
            s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_the_feed_ends_at_the_done_update_and_its_run_is_no_longer_followed() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        feed = sub.feed
        s.history.append()
        s.notify()
        update = await get(sub)
        assert update is not None and update.event.id == 1 and not update.done
        assert s.followed() and s.feed() is feed

        s.history.append(done=True)
        s.notify()
        update = await get(sub)
        assert update is not None and update.event.id == 2 and update.done
        await ended(feed.task)
        assert feed.task is not None and feed.task.exception() is None and not feed.task.cancelled()
        assert s.feed() is None and not s.followed()
        s.feeds.unsubscribe(sub)  # the watcher leaves after its last update
        assert s.feed() is None and not s.followed()

        again = await s.feeds.subscribe(NS, RUN)
        assert again.feed is not feed and s.feed() is again.feed and again.needs() is None
        assert s.followed()
        s.feeds.unsubscribe(again)
        await ended(again.feed.task)
        assert s.feed() is None and not s.followed()

    asyncio.run(main())


def test_a_watcher_that_falls_behind_is_dropped_and_the_others_keep_receiving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", 3)

    async def main() -> None:
        s = Setup()
        slow = await s.feeds.subscribe(NS, RUN)
        reading = await s.feeds.subscribe(NS, RUN)
        feed = slow.feed
        slow.start(0)
        for expected in range(1, 7):
            s.history.append()
            s.notify()
            update = await get(reading)
            assert update is not None and update.event.id == expected
            assert (slow in feed.subscriptions) == (expected <= 3)
            assert s.feeds.watching.count == (2 if expected <= 3 else 1)  # the frontend's, for the pace

        assert [(await get(slow)) is not None for _ in range(3)] == [True] * 3  # what it had
        with pytest.raises(Behind):
            await get(slow)
        assert slow.queue.empty()  # nothing held for it since
        s.feeds.unsubscribe(slow)  # as watch_run does before it subscribes again
        assert s.feeds.watching.count == 1  # counted once
        assert feed.task is not None and not feed.task.done() and s.feed() is feed

        s.history.append()
        s.notify()
        update = await get(reading)
        assert update is not None and update.event.id == 7
        s.feeds.unsubscribe(reading)
        await ended(feed.task)
        assert s.feed() is None and not s.followed()

    asyncio.run(main())


@pytest.mark.parametrize(
    "failure",
    [ServiceError(grpc.StatusCode.NOT_FOUND, "run run-1 not found"), RuntimeError("history is gone")],
    ids=["service-error", "runtime-error"],
)
def test_a_failed_read_reaches_every_watcher_and_drops_the_feed(failure: Exception) -> None:
    async def main() -> None:
        s = Setup()
        subs = [await s.feeds.subscribe(NS, RUN) for _ in range(3)]
        feed = subs[0].feed
        subs[0].start(0)
        s.history.append()
        s.notify()
        for sub in subs:
            update = await get(sub)
            assert update is not None and update.event.id == 1
        s.history.fail = failure
        s.history.append()
        s.notify()
        for sub in subs:
            with pytest.raises(type(failure)) as raised:
                await get(sub)
            assert raised.value is failure
        await ended(feed.task)
        assert feed.task is not None and feed.task.exception() is None
        assert s.feed() is None and not s.followed()
        for sub in subs:
            s.feeds.unsubscribe(sub)

        s.history.fail = None
        again = await s.feeds.subscribe(NS, RUN)  # a new feed reads again
        assert again.feed is not feed
        again.start(1)
        s.notify()
        update = await get(again)
        assert update is not None and update.event.id == 2
        s.feeds.unsubscribe(again)

    asyncio.run(main())


def test_the_feed_fails_at_its_first_read_too() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        s.history.fail = RuntimeError("history is gone")
        sub.start(0)
        with pytest.raises(RuntimeError, match="gone"):
            await get(sub)
        await ended(sub.feed.task)
        assert s.feed() is None and not s.followed()

    asyncio.run(main())


def test_the_last_watcher_leaving_stops_the_feed_and_wake_ends_a_waiting_get() -> None:
    async def main() -> None:
        s = Setup()
        before_start = await s.feeds.subscribe(NS, RUN)  # the feed waits for a position
        s.feeds.unsubscribe(before_start)
        await ended(before_start.feed.task)
        assert before_start.feed.task is not None and before_start.feed.task.cancelled()
        assert s.feed() is None and not s.followed() and s.history.calls == 0

        one = await s.feeds.subscribe(NS, RUN)
        two = await s.feeds.subscribe(NS, RUN)
        feed = one.feed
        one.start(0)
        await s.until(lambda: s.history.calls == 1)
        waiting = asyncio.create_task(two.get())
        one.wake()
        two.wake()
        assert await asyncio.wait_for(waiting, TIMEOUT) is None
        assert await get(one) is None  # woken with nothing to take

        s.feeds.unsubscribe(one)  # not the last: the feed goes on
        s.history.append()
        s.notify()
        update = await get(two)
        assert update is not None and update.event.id == 1

        waiting = asyncio.create_task(two.get())
        s.feeds.unsubscribe(two)
        assert feed.task is not None
        await ended(feed.task)
        assert feed.task.cancelled() and s.feed() is None and not s.followed()
        two.wake()  # shutting down: the stream's get returns
        assert await asyncio.wait_for(waiting, TIMEOUT) is None

    asyncio.run(main())


def test_a_lost_notice_is_covered_by_the_periodic_reread() -> None:
    async def main() -> None:
        s = Setup(reread=0.01)
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        await s.until(lambda: s.history.calls == 1)
        s.history.append()  # no notice
        update = await get(sub)
        assert update is not None and update.event.id == 1
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_the_sole_watcher_that_falls_behind_is_fed_again_after_it_subscribes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_feeds, "FEED_BACKLOG", 3)

    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        for _ in range(4):
            s.history.append()
        s.notify()
        await s.until(lambda: sub not in sub.feed.subscriptions)
        for _ in range(3):
            await get(sub)
        with pytest.raises(Behind):
            await get(sub)
        # watch_run: `except Behind: continue` -> finally unsubscribe -> subscribe, in one go
        s.feeds.unsubscribe(sub)
        again = await s.feeds.subscribe(NS, RUN)
        await ended(sub.feed.task)
        assert s.followed(), "the watcher's run is no longer followed"
        assert s.feed() is again.feed, "the watcher is on a feed that was dropped"
        again.start(4)
        s.history.append()
        s.notify()
        update = await get(again)
        assert update is not None and update.event.id == 5
        s.feeds.unsubscribe(again)

    asyncio.run(main())


def test_a_run_is_unfollowed_when_its_feed_ends_as_a_new_watcher_subscribes() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        old = sub.feed
        joined: list[Subscription] = []

        async def next_watcher() -> None:  # woken with the done update, before the feed's callback
            await sub.get()
            joined.append(await s.feeds.subscribe(NS, RUN))

        task = asyncio.create_task(next_watcher())
        await s.until(lambda: s.history.calls == 1)
        s.history.append(done=True)
        s.notify()
        await asyncio.wait_for(task, TIMEOUT)
        await ended(old.task)
        new = joined[0]
        assert new.feed is not old
        s.feeds.unsubscribe(sub)
        s.feeds.unsubscribe(new)
        await ended(new.feed.task)
        assert s.feed() is None
        assert not s.followed(), f"still followed: {s.watcher._followers}"

    asyncio.run(main())


class FailingBus:
    """NATS down: the interest announcement fails once released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def publish(self, kind: str, message: dict[str, Any]) -> None:
        await self.release.wait()
        raise ConnectionError("nats is down")

    async def flush(self, timeout: int = 1) -> None:
        pass


def test_a_watcher_that_joined_while_the_first_follow_failed_is_not_left_hanging() -> None:
    async def main() -> None:
        s = Setup()
        bus = FailingBus()
        s.watcher = RunWatcher(bus=bus)  # type: ignore[arg-type]
        s.feeds = RunFeeds(s.watcher, s.history.read, 100, 60.0)
        first = asyncio.create_task(s.feeds.subscribe(NS, RUN))
        second = asyncio.create_task(s.feeds.subscribe(NS, RUN))
        await asyncio.wait({first, second}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        bus.release.set()
        await asyncio.wait({first, second}, timeout=TIMEOUT)
        with pytest.raises(ConnectionError):
            first.result()
        if second.exception() is not None:  # failing with the first one is an answer too
            return
        sub = second.result()
        sub.start(0)
        s.history.append()
        s.notify()
        try:  # the failure, or a feed that reads: not silence
            update = await asyncio.wait_for(sub.get(), 1.0)
            assert update is not None and update.event.id == 1
        except ConnectionError:
            pass
        finally:
            s.feeds.unsubscribe(sub)

    asyncio.run(main())
