"""The public methods that do more than forward a request (every other one is
a line of the routing table). Their requests arrive defaulted and validated by
the interceptors; their failures are mapped there too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.limits import DEFAULT_POLL_WAIT
from cairn.statuses import RUN_STATUS_NAMES, TERMINAL_RUN_STATUSES
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import unavailable
from services.common.grpc_server import Draining
from services.frontend import validation as check
from services.frontend.backend import CALL_TIMEOUT, HISTORY, MATCHING, Backend
from services.frontend.keys_api import KeyHandlers
from services.frontend.routes import KEYS, RUNS, WORKERS, path
from services.frontend.run_feeds import FEED_BACKLOG, FEED_PACE, Behind, RunFeeds, messages
from services.frontend.run_watch import RunWatcher
from services.frontend.shared_reads import SharedReads
from services.frontend.triggers import Triggers

DEFAULT_WAIT_RUN = 30.0
# A watch reads at most this many events from history at a time.
WATCH_BATCH = 100
# A watch re-reads the log this often without a NATS notice (a notice may be lost).
WATCH_REREAD_SECONDS = 5.0
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Awaitable[Any]] | Callable[[Any, Context], AsyncIterator[Any]]


class Handlers:
    """TriggerRun, WaitRun, WatchRun, WatchRuns, RegisterWorker, PollAttempt
    and BatchWrite. When the frontend begins to shut down (draining), the long
    polls and streams end at once: PollAttempt empty, WaitRun not done, the
    streams UNAVAILABLE; each is what a client does again on its own."""

    def __init__(
        self,
        backend: Backend,
        watcher: RunWatcher,
        sweep_seconds: float,
        draining: Draining | None = None,
        feed_pace: tuple[float, float] = FEED_PACE,
    ) -> None:
        self.b = backend
        self.watcher = watcher
        self.sweep_seconds = sweep_seconds
        self.draining = draining or Draining()
        self.triggers = Triggers(backend, CALL_TIMEOUT)
        self.reads = SharedReads(backend)
        self.feeds = RunFeeds(watcher, self._read_events, WATCH_BATCH, WATCH_REREAD_SECONDS, feed_pace)
        self.keys = KeyHandlers(backend)

    async def _read_events(self, request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
        response: hpb.ListRunEventsResponse = await self.b.call(HISTORY, "ListRunEvents", request)
        return response

    def by_path(self) -> dict[str, Handler]:
        """The handlers by gRPC path, for the routes without a backend."""
        return {
            path(RUNS, "TriggerRun"): self.trigger_run,
            path(RUNS, "WaitRun"): self.wait_run,
            path(RUNS, "WatchRun"): self.watch_run,
            path(RUNS, "WatchRuns"): self.watch_runs,
            path(WORKERS, "RegisterWorker"): self.register_worker,
            path(WORKERS, "PollAttempt"): self.poll_attempt,
            path(WORKERS, "BatchWrite"): self.batch_write,
            path(KEYS, "ListKeys"): self.keys.list_keys,
            path(KEYS, "RevokeKey"): self.keys.revoke_key,
        }

    async def trigger_run(self, request: rpb.TriggerRunRequest, context: Context) -> rpb.TriggerRunResponse:
        """Sent with the triggers that arrive while one is in flight as one call."""
        return await self.triggers.trigger(request)

    async def wait_run(self, request: rpb.WaitRunRequest, context: Context) -> rpb.WaitRunResponse:
        """Re-reads the run when NATS announces that it ended, and at the sweep
        interval in case an announcement was lost. Shutting down, it answers
        the run as last read, not done: the client waits again (elsewhere)."""
        deadline = time.monotonic() + check.wait_seconds("timeout", request, DEFAULT_WAIT_RUN)
        get = rpb.GetRunRequest(namespace=request.namespace, run_id=request.run_id)
        while True:
            event = self.watcher.watch(request.run_id)
            try:
                with self.draining.hook(event.set):
                    run = (await self.b.call(HISTORY, "GetRun", get)).run
                    done = RUN_STATUS_NAMES.get(run.status) in TERMINAL_RUN_STATUSES
                    remaining = deadline - time.monotonic()
                    if done or remaining <= 0 or self.draining.is_set():
                        return rpb.WaitRunResponse(run=run, done=done)
                    try:
                        await asyncio.wait_for(event.wait(), min(remaining, self.sweep_seconds))
                    except TimeoutError:
                        pass
                    if self.draining.is_set():
                        return rpb.WaitRunResponse(run=run, done=False)
            finally:
                self.watcher.unwatch(request.run_id, event)

    async def watch_run(self, request: rpb.WatchRunRequest, context: Context) -> AsyncIterator[Any]:
        """The run's event log after after_event_id, until the event that ended
        the run: from the memory of the run's feed (run_feeds.py) when it
        holds them, else read from history in batches of WATCH_BATCH until
        caught up; then taken from the feed, which reads once per change (paced
        while the run changes fast) for every watcher of the run on this
        frontend, everything not yet sent in one message. The response headers are
        sent after the first read (or the feed's answer), once the run and
        after_event_id are known good (the HTTP event stream answers its
        errors as JSON until then). Shutting down, it ends UNAVAILABLE: the
        SDK watches again after the last event it got."""
        cursor = request.after_event_id
        started = False
        while True:  # once more from the cursor when the watcher fell behind its feed
            sub = await self.feeds.subscribe(request.namespace, request.run_id)
            self.draining.add_hook(sub.wake)
            try:
                settled = False
                self._unless_draining()
                replayed = sub.replay(cursor)
                if replayed is not None:  # the feed holds them: no read
                    if not started:
                        started = True
                        await context.send_initial_metadata(())
                    for batch in messages(replayed, cursor, size_of=sub.feed.size_of):
                        self._unless_draining()
                        yield sub.feed.encode(batch)
                        cursor = batch[-1].event.id
                        if batch[-1].done:
                            return
                read: list[rpb.RunUpdate] | None = [] if cursor == 0 else None
                while replayed is None:  # catching up, with reads of its own
                    self._unless_draining()
                    page = await self.reads.list_run_events(
                        hpb.ListRunEventsRequest(
                            namespace=request.namespace,
                            run_id=request.run_id,
                            after_id=cursor,
                            limit=WATCH_BATCH,
                        )
                    )
                    if not started:  # the run and after_event_id are good: the headers say so
                        started = True
                        await context.send_initial_metadata(())
                    for batch in messages(page.updates, cursor):
                        yield rpb.WatchRunResponse(updates=batch)
                        if batch[-1].done:
                            return
                    if read is not None:  # kept by the feed it may start, up to its bound
                        read.extend(page.updates)
                        if len(read) > FEED_BACKLOG:
                            read = None
                    cursor = page.last_id
                    if page.more:
                        continue
                    if page.ended:
                        # The run was read after its events: its terminal event may have
                        # committed in between. Read once more with nothing new before
                        # ending (after the terminal event there is nothing to read).
                        if not page.updates and settled:
                            return
                        settled = not page.updates
                        continue
                    sub.start(cursor, read)
                    if cursor >= (sub.needs() or 0):
                        break
                while True:  # live, from the feed: what came since the last message, as one
                    self._unless_draining()
                    for batch in messages(await sub.take(), cursor, size_of=sub.feed.size_of):
                        self._unless_draining()
                        yield sub.feed.encode(batch)
                        cursor = batch[-1].event.id
                        if batch[-1].done:
                            return
            except Behind:
                continue
            finally:
                self.draining.unhook(sub.wake)
                self.feeds.unsubscribe(sub)

    async def watch_runs(self, request: rpb.WatchRunsRequest, context: Context) -> AsyncIterator[Any]:
        """Every event from the call on (or after after_event_id) of the
        namespace's runs of the task with the tags, read like watch_run's on any change in the namespace;
        history scans a bounded range of the log per read. The response
        headers are sent once the starting point is read: a caller that has
        them sees every later event. Shutting down, it ends UNAVAILABLE, as
        watch_run does."""
        woken = await self.watcher.follow_namespace(request.namespace)
        self.draining.add_hook(woken.set)
        read = hpb.ListRunEventsRequest(
            namespace=request.namespace,
            after_id=request.after_event_id or -1,
            limit=WATCH_BATCH,
            task_id=request.task_id,
        )
        read.tags.extend(request.tags)
        started = False
        try:
            while True:
                self._unless_draining()
                woken.clear()
                page = await self.reads.list_run_events(read)
                if not started:  # the start is fixed: the headers tell the caller it watches
                    started = True
                    await context.send_initial_metadata(())
                for batch in messages(page.updates, read.after_id, to_end=False):
                    yield rpb.WatchRunsResponse(updates=batch)
                read.after_id = page.last_id
                if not page.more:
                    await _woken(woken, WATCH_REREAD_SECONDS)
        finally:
            self.watcher.unfollow_namespace(request.namespace, woken)
            self.draining.unhook(woken.set)

    def _unless_draining(self) -> None:
        """A stream's end when the frontend is shutting down: UNAVAILABLE, which
        the SDK (and the dashboard) answer by watching again after their last
        event, on another frontend or this one restarted."""
        if self.draining.is_set():
            raise unavailable(SHUTTING_DOWN)

    async def register_worker(
        self, request: wpb.RegisterWorkerRequest, context: Context
    ) -> wpb.RegisterWorkerResponse:
        """Registers with matching, then lets history align the declared schedules."""
        response: wpb.RegisterWorkerResponse = await self.b.call(MATCHING, "RegisterWorker", request)
        await self.b.call(
            HISTORY,
            "SyncDeclaredSchedules",
            hpb.SyncDeclaredSchedulesRequest(namespace=request.namespace, tasks=request.tasks),
        )
        return response

    async def poll_attempt(
        self, request: wpb.PollAttemptRequest, context: Context
    ) -> wpb.PollAttemptResponse:
        """Forwarded to matching with a deadline past the poll's own wait.
        Shutting down, the call to matching is dropped and the poll answered
        empty: the worker polls again (on another frontend, or this one
        restarted). Only an attempt matching started in the very moment it was
        dropped is lost to it; that attempt's lease expires and it runs again."""
        wait = check.wait_seconds("wait", request, DEFAULT_POLL_WAIT)
        call = asyncio.ensure_future(self.b.call(MATCHING, "PollAttempt", request, wait + CALL_TIMEOUT))

        def drop() -> None:
            call.cancel()

        with self.draining.hook(drop):
            try:
                response: wpb.PollAttemptResponse = await call
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if call.cancelled() and self.draining.is_set() and not (task and task.cancelling()):
                    return wpb.PollAttemptResponse()
                raise
        return response

    async def batch_write(self, request: wpb.BatchWriteRequest, context: Context) -> wpb.BatchWriteResponse:
        """Forwarded to history, which commits the writes in one transaction."""
        response: wpb.BatchWriteResponse = await self.b.call(HISTORY, "BatchWrite", request)
        return response


SHUTTING_DOWN = "this frontend is shutting down; watch again after the last event you received"


async def _woken(event: asyncio.Event, timeout: float) -> None:
    """Until the event is set or the timeout passes."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
