"""One reader per watched run on this frontend: however many WatchRun calls
follow a run, history is asked once per change of it (at most once per
FEED_PACE while it changes fast), and each new update is handed to every
watcher as the same object; the watchers sent the same batch share one encoded
message (RunFeed.encode). The feed keeps the run's last
FEED_BACKLOG updates (all of them when its first watcher read the run from
its start), so a watcher that joins with a cursor among them (a dashboard
opening a live run) is served from memory; any other catches up from its
own cursor with its own reads (SharedReads), then takes the feed's updates.
One that falls behind by more than FEED_BACKLOG updates goes back to reading
(its stream stays whole, it only stops holding the feed's memory).

Correctness rests on the log's order: a run's event ids follow its commit
order (history holds the run's row lock while it logs), so a watcher that
read after subscribing has everything up to the feed's position at that
moment, and skipping the feed's updates at or below its cursor leaves no gap."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import run_service_pb2 as rpb
from services.frontend.backend import shared_task
from services.frontend.run_watch import RunWatcher

# A watcher this many updates behind the feed reads for itself again; the feed
# keeps at most this many of the run's last updates, and at most FEED_MEMORY_BYTES
# of them (an update carries its run, and a log line up to 12 KiB); its last
# ENCODED_KEPT encoded messages come on top.
FEED_BACKLOG = 1000
FEED_MEMORY_BYTES = 1 << 20
# A feed reads its run at most once per FEED_READ_INTERVAL plus this much time per
# watcher of this frontend, of any run (29 ms for one watcher, 225 ms for 50,
# FEED_MAX_INTERVAL at most): a run that changes faster reaches its watchers in
# batches, each sent as one message. A read costs history, PostgreSQL and this
# frontend about 2.5 ms of CPU in all, and a message about 60 µs on each side of
# gRPC: one read and one message per update to each of 50 watchers is more work
# than the run's own. Counting every watcher of the frontend bounds its reads and
# messages together (below 1 / FEED_INTERVAL_PER_WATCHER a second) however they
# are spread over runs: 50 runs watched once each cost what one run watched 50
# times does. At 2 ms per watcher, 50 watchers of a run recording steps back to
# back still slowed it by 13 % (bench/README.md). A change after a quiet spell is
# read at once.
FEED_READ_INTERVAL = 0.025
FEED_INTERVAL_PER_WATCHER = 0.004
FEED_PACE = (FEED_READ_INTERVAL, FEED_INTERVAL_PER_WATCHER)
FEED_MAX_INTERVAL = 0.25
# One message of a watch holds at most this many bytes of updates (one larger
# update goes alone).
MESSAGE_BYTES = 256 * 1024
# A feed keeps its last this many encoded messages (RunFeed.encode).
ENCODED_KEPT = 4

Read = Callable[[hpb.ListRunEventsRequest], Awaitable[hpb.ListRunEventsResponse]]


class Behind(Exception):
    """The subscriber fell FEED_BACKLOG updates behind: read for itself again."""


@dataclass
class Watching:
    """How many subscriptions the feeds of one frontend hold in all (the pace
    of each grows with it)."""

    count: int = 0


@dataclass(eq=False)
class Subscription:
    """One watcher's place on a run's feed: the updates read since it joined
    (or the failure that ended the feed), and the feed's position when it
    joined (None before the feed had one: then the feed's first position)."""

    feed: RunFeed
    joined_at: int | None
    # updates, the failure that ended the feed, or None (wake())
    queue: asyncio.Queue[rpb.RunUpdate | BaseException | None] = field(default_factory=asyncio.Queue)
    failure: BaseException | None = None  # taken from the queue behind updates: raised next

    def wake(self) -> None:
        """Lets a waiting get() or take() return, e.g. to end the stream at a shutdown."""
        self.queue.put_nowait(None)

    def needs(self) -> int | None:
        """The cursor the watcher's own reads must reach before it takes the
        feed's updates; None when the feed has not started yet."""
        return self.joined_at if self.joined_at is not None else self.feed.start

    def start(self, cursor: int, read: Sequence[rpb.RunUpdate] | None = None) -> None:
        """The watcher has read the log up to cursor (`read`: every update of
        the run up to there, when it read from the start): a feed without a
        position starts from there."""
        self.feed.begin(cursor, read)

    def replay(self, cursor: int) -> list[rpb.RunUpdate] | None:
        """The updates after cursor up to the feed's position when the
        watcher joined, from the feed's memory, when it holds them all (the
        cursor is its start or one of its updates); None otherwise: the
        watcher reads them from history."""
        return self.feed.replay(cursor) if self.joined_at is not None else None

    async def get(self) -> rpb.RunUpdate | None:
        """The next update of the feed (None when woken); raises what ended the feed."""
        if self.failure is not None:
            raise self.failure
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def take(self) -> list[rpb.RunUpdate]:
        """Every update of the feed not yet taken, waiting for the first (empty
        when woken); what ended the feed is raised once they are taken."""
        first = await self.get()
        taken = [first] if first is not None else []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, BaseException):
                if not taken:
                    raise item
                self.failure = item
                break
            if item is not None:
                taken.append(item)
        return taken


class RunFeed:
    """A run's updates after `position`, read from history on the wakes of
    its follower (paced) and handed to each subscription."""

    def __init__(
        self,
        key: tuple[str, str],
        read: Read,
        batch: int,
        reread: float,
        pace: tuple[float, float] = (0.0, 0.0),
        watching: Watching | None = None,
    ) -> None:
        self.key = key
        self.position: int | None = None
        self.start: int | None = None
        self.subscriptions: set[Subscription] = set()
        self._read = read
        self._batch = batch
        self._reread = reread
        self._pace = pace  # seconds between reads, and more per subscription (FEED_PACE)
        self._watching = watching or Watching()  # the subscriptions of every feed of the frontend
        self._began = asyncio.Event()
        self.woken = asyncio.Event()
        # done when history has been told of the run (RunWatcher.follow), or failed to be
        self.followed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.dropped = False
        # the updates after kept_from, up to position (FEED_BACKLOG, FEED_MEMORY_BYTES at most)
        self.kept: deque[rpb.RunUpdate] = deque()
        self.kept_bytes = 0
        self._sizes: dict[int, int] = {}  # the encoded size of each kept update, by event id
        self.kept_from: int | None = None
        self.on_empty: Callable[[], None] = lambda: None  # the last subscription fell behind
        self._encoded: dict[tuple[int, int], bytes] = {}

    def join(self, sub: Subscription) -> None:
        self.subscriptions.add(sub)
        self._watching.count += 1

    def leave(self, sub: Subscription) -> None:
        if sub in self.subscriptions:
            self.subscriptions.discard(sub)
            self._watching.count -= 1

    def begin(self, cursor: int, read: Sequence[rpb.RunUpdate] | None) -> None:
        if self.position is None:
            self.position = self.start = cursor
            self.kept_from = 0 if read is not None else cursor
            for update in read or ():
                self._keep(update)
            self._began.set()

    def replay(self, cursor: int) -> list[rpb.RunUpdate] | None:
        if self.kept_from is None or cursor < self.kept_from:
            return None
        if cursor != self.kept_from and not any(u.event.id == cursor for u in self.kept):
            return None
        return [u for u in self.kept if u.event.id > cursor]

    def encode(self, batch: Sequence[rpb.RunUpdate]) -> bytes:
        """The WatchRunResponse of a batch of this feed's updates, encoded once
        for every watcher that is sent the same batch (the watchers keeping up
        each take the same read); a batch is known by its first and last event,
        since the feed's updates never change."""
        key = (batch[0].event.id, batch[-1].event.id)
        encoded = self._encoded.get(key)
        if encoded is None:
            if len(self._encoded) >= ENCODED_KEPT:
                del self._encoded[next(iter(self._encoded))]
            encoded = self._encoded[key] = rpb.WatchRunResponse(updates=batch).SerializeToString()
        return encoded

    def size_of(self, update: rpb.RunUpdate) -> int:
        """An update's encoded size, measured once when the feed kept it (each
        watcher's messages() asks for the same updates' sizes)."""
        size = self._sizes.get(update.event.id)
        return size if size is not None else update.ByteSize()

    def _keep(self, update: rpb.RunUpdate) -> None:
        self.kept.append(update)
        size = self._sizes[update.event.id] = update.ByteSize()
        self.kept_bytes += size
        while len(self.kept) > FEED_BACKLOG or self.kept_bytes > FEED_MEMORY_BYTES:
            dropped = self.kept.popleft()
            self.kept_bytes -= self._sizes.pop(dropped.event.id)
            self.kept_from = dropped.event.id

    def _deliver(self, item: rpb.RunUpdate | BaseException) -> None:
        """Keeps an update and hands it (or what ended the feed) to every subscription."""
        if not isinstance(item, BaseException):
            self._keep(item)
        for sub in list(self.subscriptions):
            self._put(sub, item)

    async def _hand_out(self, updates: Sequence[rpb.RunUpdate]) -> None:
        """Hands a read's updates (already kept) to the subscriptions one at a
        time, letting the event loop serve other calls between two: a step
        recorded through this frontend waits for one watcher's message, not
        for all of them. A subscription made meanwhile joined at the feed's
        new position and gets them from its own read or the feed's memory."""
        subs = list(self.subscriptions) if updates else []
        for i, sub in enumerate(subs):
            if i:
                await asyncio.sleep(0)
                if sub not in self.subscriptions:
                    continue
            for update in updates:
                if not self._put(sub, update):
                    break

    def _put(self, sub: Subscription, item: rpb.RunUpdate | BaseException) -> bool:
        """Queues the item for sub, or drops sub with Behind when it holds
        FEED_BACKLOG updates already (False)."""
        if sub.queue.qsize() >= FEED_BACKLOG and not isinstance(item, BaseException):
            self.leave(sub)
            sub.queue.put_nowait(Behind())
            if not self.subscriptions:
                self.on_empty()
            return False
        sub.queue.put_nowait(item)
        return True

    async def run(self, watcher: RunWatcher) -> None:
        """Follows the run, then reads its new events on every wake (a
        notice, the periodic re-read; after a read, the next waits out the
        pace) until its last one, and hands them out;
        a failed follow or read ends the feed for every subscription with
        that failure."""
        namespace, run_id = self.key
        try:
            await watcher.follow(run_id, self.woken)
        except asyncio.CancelledError:  # nobody subscribes any more
            self.followed.cancel()
            raise
        except Exception as exc:
            self.followed.set_exception(exc)
            self.followed.exception()  # retrieved: each subscriber raises it
            return
        self.followed.set_result(None)
        await self._began.wait()
        settled = False
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.woken.clear()
                read_at = loop.time()
                assert self.position is not None
                page = await self._read(
                    hpb.ListRunEventsRequest(
                        namespace=namespace, run_id=run_id, after_id=self.position, limit=self._batch
                    )
                )
                updates: list[rpb.RunUpdate] = []
                for update in page.updates:  # up to the one that ends the run
                    self._keep(update)
                    updates.append(update)
                    if update.done:
                        break
                self.position = page.last_id
                await self._hand_out(updates)
                if updates and updates[-1].done:
                    return
                if page.more:
                    continue
                if page.ended:  # see handlers.watch_run: the last event may have committed after the read
                    if not page.updates and settled:  # ended with no terminal update: each reads for itself
                        self._deliver(Behind())
                        return
                    settled = not page.updates
                    continue
                try:
                    await asyncio.wait_for(self.woken.wait(), self._reread)
                except TimeoutError:
                    pass
                base, per_watcher = self._pace
                interval = min(base + per_watcher * self._watching.count, FEED_MAX_INTERVAL)
                pause = read_at + interval - loop.time()
                if pause > 0:  # changes coming fast: gather them for one read
                    await asyncio.sleep(pause)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every subscriber's stream ends with it
            self._deliver(exc)


class RunFeeds:
    """The feeds of the runs watched on this frontend, by (namespace, run id);
    a feed lives while it has a subscription and its run goes on. `read` is
    history's ListRunEvents itself, never a read shared with the watchers
    catching up: one begun before the change that woke the feed would miss it."""

    def __init__(
        self,
        watcher: RunWatcher,
        read: Read,
        batch: int,
        reread: float,
        pace: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self._watcher = watcher
        self._read = read
        self._batch = batch
        self._reread = reread
        self._pace = pace
        self._feeds: dict[tuple[str, str], RunFeed] = {}
        self.watching = Watching()

    async def subscribe(self, namespace: str, run_id: str) -> Subscription:
        """A place on the run's feed, made (and the run followed, so history
        announces its changes) at its first watcher; it returns once history
        has been told, so the watcher's first read comes after that."""
        key = (namespace, run_id)
        feed = self._feeds.get(key)
        if feed is None or feed.dropped or (feed.task is not None and feed.task.done()):
            feed = RunFeed(key, self._read, self._batch, self._reread, self._pace, self.watching)
            self._feeds[key] = feed
            feed.task = shared_task(feed.run(self._watcher))  # not the first watcher's deadline
            feed.on_empty = lambda: self._close(feed)
            feed.task.add_done_callback(lambda _: self._drop(feed))
        sub = Subscription(feed, feed.position)
        feed.join(sub)
        try:
            await asyncio.shield(feed.followed)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """The watcher is gone; its run's feed stops with its last watcher."""
        feed = sub.feed
        feed.leave(sub)
        if not feed.subscriptions:
            self._close(feed)

    def _close(self, feed: RunFeed) -> None:
        self._drop(feed)
        if feed.task is not None and not feed.task.done():
            feed.task.cancel()

    def _drop(self, feed: RunFeed) -> None:
        """The feed takes no more subscriptions, and its run is no longer followed by it."""
        if feed.dropped:
            return
        feed.dropped = True
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
        self._watcher.unfollow(feed.key[1], feed.woken)


def _byte_size(update: rpb.RunUpdate) -> int:
    return update.ByteSize()


def messages(
    updates: Sequence[rpb.RunUpdate],
    after: int,
    to_end: bool = True,
    size_of: Callable[[rpb.RunUpdate], int] = _byte_size,
) -> Iterator[list[rpb.RunUpdate]]:
    """The updates after the event `after` (to_end: up to the one that ends
    the run) as the updates of successive messages of MESSAGE_BYTES at most
    (an update's size from size_of: RunFeed.size_of for a feed's updates)."""
    batch: list[rpb.RunUpdate] = []
    size = 0
    for update in updates:
        if update.event.id <= after:
            continue
        grows = size_of(update)
        if batch and size + grows > MESSAGE_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(update)
        size += grows
        if update.done and to_end:
            break
    if batch:
        yield batch
