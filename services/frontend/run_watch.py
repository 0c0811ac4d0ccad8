"""Wakes WaitRun calls when history announces a run change on NATS."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any


class RunWatcher:
    """Events per run id, set when a change of that run is announced."""

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
        for event in self._events.get(message.get("run_id", ""), ()):
            event.set()
