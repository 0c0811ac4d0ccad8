"""Long-polls waiting for work, per key (namespace, task): a NATS "work" notice,
a run that freed a queue slot, or the sweep wakes them; a shutdown wakes them
all for good (drain)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

Key = tuple[str, str]  # (namespace, task_id)


class Waiters:
    """Pollers waiting per key, woken one at a time in arrival order."""

    def __init__(self) -> None:
        self._by_key: dict[Key, list[asyncio.Event]] = defaultdict(list)
        # Set when matching begins to shut down: a poll then answers with what it
        # has (nothing) instead of waiting, so the shutdown is not held for it.
        self.draining = False

    def drain(self) -> None:
        """Wakes every poller, now and from now on (grpc_server.Draining)."""
        self.draining = True
        for waiting in list(self._by_key.values()):
            for event in waiting:
                event.set()

    def add(self, keys: list[Key]) -> asyncio.Event:
        event = asyncio.Event()
        if self.draining:
            event.set()
        for key in keys:
            self._by_key[key].append(event)
        return event

    def remove(self, keys: list[Key], event: asyncio.Event) -> None:
        for key in keys:
            waiting = self._by_key.get(key)
            if waiting and event in waiting:
                waiting.remove(event)
                if not waiting:
                    del self._by_key[key]

    def wake(self, key: Key, count: int = 1) -> None:
        """Wakes up to `count` pollers of this key that are not already woken."""
        for event in self._by_key.get(key, []):
            if count <= 0:
                return
            if not event.is_set():
                event.set()
                count -= 1

    def wake_all(self, key: Key) -> None:
        """Wakes every poller of this key."""
        self.wake(key, count=1 << 30)

    def keys(self) -> list[Key]:
        return list(self._by_key)
