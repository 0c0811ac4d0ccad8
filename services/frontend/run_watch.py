"""Wakes WaitRun calls when history announces on NATS that a run ended."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from cairn.statuses import TERMINAL_RUN_STATUSES


class RunWatcher:
    """Events per run id, set when the end of that run is announced."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def watch(self, run_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[run_id].add(event)
        return event

    def unwatch(self, run_id: str, event: asyncio.Event) -> None:
        events = self._events.get(run_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[run_id]

    def on_change(self, message: dict[str, Any]) -> None:
        """A run changed: wakes its watchers when it ended (or the notice does not
        say), so a waiting call re-reads the run once, not at every step."""
        status = message.get("status")
        if status is not None and status not in TERMINAL_RUN_STATUSES:
            return
        for event in self._events.get(message.get("run_id", ""), ()):
            event.set()
