"""Wakes WaitRun calls when history announces on NATS that a run ended, and
WatchRun / WatchRuns calls when a run changed or logged an event (a step, a
metadata update): the notices only wake a call, which then reads the event log
from history; a lost notice is covered by the call's periodic re-read.

History publishes the "events" notices only for the runs and namespaces some
frontend watches: this one announces its followed runs and namespaces on NATS
(bus.INTEREST) at the first follower, sent before that follower's first read,
and again every INTEREST_REFRESH_SECONDS while followed."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common import bus as bus_mod
from services.common.bus import Bus


class RunWatcher:
    """Events per run id (set when the end of that run is announced, or for a
    follower at any change of it) and per namespace (set at any change of one
    of its runs). With a bus, followed runs and namespaces are announced on it
    (without one, e.g. in tests of the handlers alone, nothing is)."""

    def __init__(self, bus: Bus | None = None, refresh: float = bus_mod.INTEREST_REFRESH_SECONDS) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._followers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._namespaces: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._bus = bus
        self._refresh = refresh
        self._ttl = refresh * (bus_mod.INTEREST_TTL_SECONDS / bus_mod.INTEREST_REFRESH_SECONDS)
        self._announced: dict[tuple[str, str], float] = {}  # ("run" | "ns", key) -> first announced
        self._refresher: asyncio.Task[None] | None = None

    def watch(self, run_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[run_id].add(event)
        return event

    def unwatch(self, run_id: str, event: asyncio.Event) -> None:
        _discard(self._events, run_id, event)

    async def follow(self, run_id: str, event: asyncio.Event | None = None) -> asyncio.Event:
        """An event (`event`, or a new one) set at every change of the run
        (clear it before reading); when it returns, history has been told
        (see _announce)."""
        event = event or asyncio.Event()
        self._followers[run_id].add(event)
        try:
            await self._announce(("run", run_id), event)
        except BaseException:
            self.unfollow(run_id, event)
            raise
        return event

    def unfollow(self, run_id: str, event: asyncio.Event) -> None:
        if _discard(self._followers, run_id, event):
            self._announced.pop(("run", run_id), None)

    async def follow_namespace(self, namespace: str) -> asyncio.Event:
        """An event set at every change of any run of the namespace; announced like follow's."""
        event = asyncio.Event()
        self._namespaces[namespace].add(event)
        try:
            await self._announce(("ns", namespace), event)
        except BaseException:
            self.unfollow_namespace(namespace, event)
            raise
        return event

    def unfollow_namespace(self, namespace: str, event: asyncio.Event) -> None:
        if _discard(self._namespaces, namespace, event):
            self._announced.pop(("ns", namespace), None)

    async def _announce(self, key: tuple[str, str], event: asyncio.Event) -> None:
        """Publishes the interest when the run or namespace was not followed
        yet and waits until NATS has it, so the follower's first read comes
        after it; and wakes the follower once more INTEREST_SETTLE_SECONDS
        after the first announcement, for an event a history replica logged
        before it handled the message (the periodic re-read covers the rest:
        a lost message, a replica that was not subscribed yet)."""
        if self._bus is None:
            return
        now = time.monotonic()
        first = self._announced.setdefault(key, now)
        if first == now:
            kind, name = key
            runs, namespaces = ([name], []) if kind == "run" else ([], [name])
            await self._bus.publish(bus_mod.INTEREST, bus_mod.interest(runs, namespaces, self._ttl))
            await self._bus.flush()
            if self._refresher is None:
                self._refresher = asyncio.create_task(self._refresh_while_followed())
        settle = first + bus_mod.INTEREST_SETTLE_SECONDS - time.monotonic()
        if settle > 0:
            asyncio.get_running_loop().call_later(settle, event.set)

    async def _refresh_while_followed(self) -> None:
        """Announces every followed run and namespace again each refresh
        interval, until none is followed."""
        try:
            while True:
                await asyncio.sleep(self._refresh)
                if not self._followers and not self._namespaces:
                    return
                await self.announce_all()
        finally:
            self._refresher = None

    async def announce_all(self) -> None:
        """Publishes the interest in every followed run and namespace, in batches."""
        if self._bus is None:
            return
        runs, namespaces = list(self._followers), list(self._namespaces)
        size = bus_mod.INTEREST_BATCH
        for i in range(0, max(len(runs), len(namespaces)), size):
            message = bus_mod.interest(runs[i : i + size], namespaces[i : i + size], self._ttl)
            await self._bus.publish(bus_mod.INTEREST, message)

    async def close(self) -> None:
        """Stops the refreshes."""
        if self._refresher is not None:
            self._refresher.cancel()

    def on_change(self, message: dict[str, Any]) -> None:
        """A run changed: wakes its WaitRun calls when it ended (or the notice
        does not say), so a waiting call re-reads the run once, not at every
        step; and its followers always."""
        self.on_logged(message)
        status = message.get("status")
        if status is not None and status not in TERMINAL_RUN_STATUSES:
            return
        for event in self._events.get(message.get("run_id", ""), ()):
            event.set()

    def on_logged(self, message: dict[str, Any]) -> None:
        """A run logged an event without changing status: wakes its followers."""
        for event in self._followers.get(message.get("run_id", ""), ()):
            event.set()
        for event in self._namespaces.get(message.get("namespace", ""), ()):
            event.set()


def _discard(table: dict[str, set[asyncio.Event]], key: str, event: asyncio.Event) -> bool:
    """Removes the event; whether it was the key's last."""
    events = table.get(key)
    if events is not None:
        events.discard(event)
        if not events:
            del table[key]
            return True
    return False
