"""Wakes WaitRun calls when history announces on NATS that a run ended, and
WatchRun / WatchRuns calls when a run changed or logged an event (a step, a
metadata update): the notices only wake a call, which then reads the event log
from history; a lost notice is covered by the call's periodic re-read."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from cairn.statuses import TERMINAL_RUN_STATUSES


class RunWatcher:
    """Events per run id (set when the end of that run is announced, or for a
    follower at any change of it) and per namespace (set at any change of one
    of its runs)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._followers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._namespaces: dict[str, set[asyncio.Event]] = defaultdict(set)

    def watch(self, run_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[run_id].add(event)
        return event

    def unwatch(self, run_id: str, event: asyncio.Event) -> None:
        _discard(self._events, run_id, event)

    def follow(self, run_id: str) -> asyncio.Event:
        """An event set at every change of the run (clear it before reading)."""
        event = asyncio.Event()
        self._followers[run_id].add(event)
        return event

    def unfollow(self, run_id: str, event: asyncio.Event) -> None:
        _discard(self._followers, run_id, event)

    def follow_namespace(self, namespace: str) -> asyncio.Event:
        """An event set at every change of any run of the namespace."""
        event = asyncio.Event()
        self._namespaces[namespace].add(event)
        return event

    def unfollow_namespace(self, namespace: str, event: asyncio.Event) -> None:
        _discard(self._namespaces, namespace, event)

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


def _discard(table: dict[str, set[asyncio.Event]], key: str, event: asyncio.Event) -> None:
    events = table.get(key)
    if events is not None:
        events.discard(event)
        if not events:
            del table[key]
