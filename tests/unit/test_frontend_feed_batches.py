"""A watched run's updates travel in batches: the feed reads a run that changes
fast at most once per FEED_PACE (a base and more per watcher of the frontend,
FEED_MAX_INTERVAL at most), a watcher takes everything that came since its last message as one
message (messages(), at most MESSAGE_BYTES each), the feed encodes a message once
for all the watchers sent it, and the SDK and the SSE stream hand each update on
alone, as before."""

from __future__ import annotations

import asyncio
import json

import pytest
from feed_fakes import NS, RUN, TIMEOUT, Setup, get

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.frontend import run_feeds
from services.frontend.http.app import sse
from services.frontend.run_feeds import MESSAGE_BYTES, Behind, messages
from services.frontend.serving import _encoder
from worker_sdk._convert import RunUpdates


def update(event_id: int, done: bool = False, details: str = "", status: int = 0) -> rpb.RunUpdate:
    return rpb.RunUpdate(
        event=cpb.RunEvent(id=event_id, type="step_recorded", details_json=details),
        run=cpb.Run(id=RUN, status=status),
        done=done,
    )


def ids(batches: list[list[rpb.RunUpdate]]) -> list[list[int]]:
    return [[u.event.id for u in batch] for batch in batches]


def test_messages_hold_the_updates_after_the_cursor_up_to_the_end_of_the_run() -> None:
    log = [update(i) for i in range(1, 6)] + [update(6, done=True), update(7)]
    assert ids(list(messages(log, 2))) == [[3, 4, 5, 6]]
    assert ids(list(messages(log, 2, to_end=False))) == [[3, 4, 5, 6, 7]]  # WatchRuns: runs end, it goes on
    assert list(messages(log, 7)) == []


def test_messages_are_cut_at_message_bytes_and_a_larger_update_goes_alone() -> None:
    third = "x" * (MESSAGE_BYTES // 3)
    big = "y" * (MESSAGE_BYTES + 10)
    log = [update(1, details=third), update(2, details=third), update(3, details=third)]
    log += [update(4, details=big), update(5)]
    batches = list(messages(log, 0))
    assert ids(batches) == [[1, 2], [3], [4], [5]]
    assert all(sum(u.ByteSize() for u in b) <= MESSAGE_BYTES for b in batches if len(b) > 1)


def test_messages_take_sizes_from_the_feed_measured_once_when_kept() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        feed = sub.feed
        updates = [update(1, details="x" * 100), update(2)]
        for u in updates:
            feed._keep(u)
        assert [feed.size_of(u) for u in updates] == [u.ByteSize() for u in updates]
        feed._sizes[1] = MESSAGE_BYTES  # what the feed measured is what messages() uses
        assert ids(list(messages(updates, 0, size_of=feed.size_of))) == [[1], [2]]
        assert feed.size_of(update(3)) == update(3).ByteSize()  # one it did not keep: measured
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_take_hands_over_everything_queued_and_a_failure_after_those_updates() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        await s.until(lambda: s.history.calls == 1)
        feed = sub.feed
        for i in (1, 2, 3):
            feed._deliver(update(i))
        feed._deliver(Behind())
        assert [u.event.id for u in await asyncio.wait_for(sub.take(), TIMEOUT)] == [1, 2, 3]
        with pytest.raises(Behind):  # what ended the feed, once its updates are taken
            await asyncio.wait_for(sub.take(), TIMEOUT)
        s.feeds.unsubscribe(sub)

        s2 = Setup()
        sub = await s2.feeds.subscribe(NS, RUN)
        sub.wake()
        assert await asyncio.wait_for(sub.take(), TIMEOUT) == []  # woken with nothing to take
        s2.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_a_fast_changing_run_is_read_once_per_pace_per_watcher_with_all_its_changes() -> None:
    async def main() -> None:
        pace = 0.05
        s = Setup(pace=(0.01, pace))
        subs = [await s.feeds.subscribe(NS, RUN) for _ in range(3)]
        subs[0].start(0)
        await s.until(lambda: s.history.calls == 1)
        s.history.append()
        s.notify()
        await s.until(lambda: s.history.calls == 2)  # the first change: read at once
        for _ in range(4):  # four more changes at once: one read, the base and 3 x pace later
            s.history.append()
            s.notify()
        await s.until(lambda: s.history.calls == 3)
        assert s.history.read_at[2] - s.history.read_at[1] >= 0.01 + 3 * pace - 0.005
        for sub in subs:
            first = await get(sub)
            assert first is not None and first.event.id == 1
            assert [u.event.id for u in await asyncio.wait_for(sub.take(), TIMEOUT)] == [2, 3, 4, 5]
        assert s.history.calls == 3
        for sub in subs:
            s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_a_read_is_handed_to_the_watchers_one_at_a_time_with_other_work_between() -> None:
    """The feed lets the event loop run other work (a step recorded through the
    frontend) between two watchers: a task that runs at every turn of the loop
    runs between the updates queued for one watcher and the other's."""

    async def main() -> None:
        s = Setup()
        subs = [await s.feeds.subscribe(NS, RUN) for _ in range(2)]
        subs[0].start(0)
        await s.until(lambda: s.history.calls == 1)
        seen: list[str] = []
        for name, sub in zip("ab", subs, strict=True):
            put = sub.queue.put_nowait

            def recorded(item: object, name: str = name, put: object = put) -> None:
                seen.append(name)
                put(item)  # type: ignore[operator]

            sub.queue.put_nowait = recorded  # type: ignore[method-assign]

        async def turns() -> None:
            while True:
                seen.append("turn")
                await asyncio.sleep(0)

        ticking = asyncio.create_task(turns())
        s.history.append()
        s.history.append()
        s.notify()
        async with asyncio.timeout(TIMEOUT):
            while seen.count("a") < 2 or seen.count("b") < 2:
                await asyncio.sleep(0)
        ticking.cancel()
        first = next(x for x in seen if x != "turn")  # the feed's set of watchers has no order
        second = "b" if first == "a" else "a"
        last_first, first_second = len(seen) - 1 - seen[::-1].index(first), seen.index(second)
        assert last_first < first_second and "turn" in seen[last_first:first_second], seen
        for sub in subs:
            s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_the_pace_counts_the_watchers_of_every_run_on_the_frontend() -> None:
    """Two watchers of other runs lengthen the pause of a run watched once as
    two more watchers of it would: a frontend's reads and messages are bounded
    however its watchers are spread over runs."""

    async def main() -> None:
        pace = 0.05
        s = Setup(pace=(0.01, pace))
        own = s.history.read

        async def read(request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
            if request.run_id == RUN:
                return await own(request)
            return hpb.ListRunEventsResponse(last_id=request.after_id)  # other runs: nothing new

        s.feeds._read = read
        others = [await s.feeds.subscribe(NS, f"other-{i}") for i in range(2)]
        for other in others:
            other.start(0)
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        assert s.feeds.watching.count == 3
        await s.until(lambda: s.history.calls == 1)
        s.history.append()
        s.notify()
        await s.until(lambda: s.history.calls == 2)  # after a quiet spell: at once
        s.history.append()
        s.notify()
        await s.until(lambda: s.history.calls == 3)
        assert s.history.read_at[2] - s.history.read_at[1] >= 0.01 + 3 * pace - 0.005
        for other in others:
            s.feeds.unsubscribe(other)
        s.feeds.unsubscribe(sub)
        assert s.feeds.watching.count == 0

    asyncio.run(main())


def test_the_pause_between_reads_is_at_most_feed_max_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_feeds, "FEED_MAX_INTERVAL", 0.05)

    async def main() -> None:
        s = Setup(pace=(0.0, 60.0))  # a minute per watcher, but never more than the maximum
        sub = await s.feeds.subscribe(NS, RUN)
        sub.start(0)
        await s.until(lambda: s.history.calls == 1)
        s.history.append()
        s.notify()
        await s.until(lambda: s.history.calls == 2)
        s.history.append()
        s.notify()
        await s.until(lambda: s.history.calls == 3)
        assert 0.045 <= s.history.read_at[2] - s.history.read_at[1] < TIMEOUT
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_a_batch_is_encoded_once_for_every_watcher_sent_it() -> None:
    async def main() -> None:
        s = Setup()
        sub = await s.feeds.subscribe(NS, RUN)
        feed = sub.feed
        batch = [update(1), update(2), update(3, done=True)]
        encoded = feed.encode(batch)
        assert feed.encode(list(batch)) is encoded  # the same batch: the same bytes, not encoded again
        assert rpb.WatchRunResponse.FromString(encoded) == rpb.WatchRunResponse(updates=batch)
        for i in range(4, 4 + run_feeds.ENCODED_KEPT):
            feed.encode([update(i)])
        assert len(feed._encoded) == run_feeds.ENCODED_KEPT  # the oldest is forgotten
        assert feed.encode(batch) is not encoded and feed.encode(batch) == encoded
        s.feeds.unsubscribe(sub)

    asyncio.run(main())


def test_a_stream_method_sends_an_encoded_message_as_it_is() -> None:
    encode = _encoder(rpb.WatchRunResponse)
    message = rpb.WatchRunResponse(updates=[update(1)])
    assert encode(message) == message.SerializeToString()
    assert encode(b"\x0a\x00") == b"\x0a\x00"


def test_sse_sends_each_update_of_a_message_as_its_own_event() -> None:
    text = sse(rpb.WatchRunResponse(updates=[update(7), update(8, done=True)]))
    events = [block for block in text.split("\n\n") if block]
    assert [e.splitlines()[0] for e in events] == ["id: 7", "id: 8"]
    assert [json.loads(e.splitlines()[1][len("data: ") :])["done"] for e in events] == [False, True]


def test_the_sdk_converts_an_unchanged_run_once_and_a_changed_one_again() -> None:
    convert = RunUpdates()
    first, second = convert(update(1, status=2)), convert(update(2, status=2))
    assert second.run is first.run and (first.event.id, second.event.id) == (1, 2)
    third = convert(update(3, done=True, status=3))
    assert third.run is not first.run and third.run.status != first.run.status and third.done
