"""NATS as a notification bus: "task T has work", "run R changed", "timer due",
"run R logged an event" (only while a frontend has said it watches R or R's
namespace: INTEREST). A lost message costs latency, never correctness (every
consumer also sweeps the database), so the bus keeps reconnecting in the
background and a publish while NATS is down is dropped with a counted warning."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common import metrics

log = logging.getLogger("cairn.bus")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]

WORK = "work"  # {"namespace", "task_id"}: a queue entry became ready
RUNS = "runs"  # {"namespace", "run_id", "task_id", "queue", "status"}: a run changed
EVENTS = "events"  # {"namespace", "run_id"}: an event was logged without a status change (step, metadata)
TIMERS = "timers"  # {"due_at"}: a timer was set, history replicas re-check their sleep
# {"run_ids": [...], "namespaces": [...], "ttl": seconds}: a frontend has WatchRun watchers of
# these runs and WatchRuns watchers of these namespaces; history publishes EVENTS only for
# them, each until its ttl passes without a refresh (RUNS notices are never filtered).
INTEREST = "interest"
KEYS = "keys"  # {"id"}: an API key was revoked; frontends forget it at once

# A frontend announces a run or namespace at its first watcher and again this often while watched.
INTEREST_REFRESH_SECONDS = 5.0
# How long history keeps an announced interest: three refreshes may be lost.
INTEREST_TTL_SECONDS = 3 * INTEREST_REFRESH_SECONDS
# The longest ttl history accepts from a message (a bad one cannot pin a run forever).
INTEREST_MAX_TTL_SECONDS = 60.0
# After announcing a new interest the frontend reads the log once more this much later: a
# history replica may log an event after the watcher's first read and before it handled
# the interest (without the read the watcher would wait for WATCH_REREAD_SECONDS).
INTEREST_SETTLE_SECONDS = 0.25
# Run ids (or namespaces) per refresh message, far below NATS's 1 MB payload limit.
INTEREST_BATCH = 1000
# How long a first watcher waits for NATS to confirm its interest was sent (Bus.flush).
FLUSH_TIMEOUT = 1  # whole seconds (nats-py's type)


def interest(run_ids: list[str], namespaces: list[str], ttl: float = INTEREST_TTL_SECONDS) -> dict[str, Any]:
    """An INTEREST message."""
    return {"run_ids": run_ids, "namespaces": namespaces, "ttl": ttl}


class Bus:
    """A NATS connection that survives NATS restarts and never blocks a caller."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.dropped = 0
        self._nc: NATS | None = None
        self._subs: list[tuple[str, Handler]] = []
        self._connector: asyncio.Task[None] | None = None
        self._closing = False

    def subject(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    async def start(self) -> None:
        """Connects in the background; returns at once."""
        self._connector = asyncio.create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                nc = await nats.connect(
                    self.url,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
            except Exception as exc:  # NATS down at start: keep trying, the sweep covers us
                log.warning("NATS at %s not reachable (%s); retrying", self.url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._nc = nc
            metrics.NATS_CONNECTED.set(1)
            for kind, handler in self._subs:
                await self._subscribe(kind, handler)
            log.info("connected to NATS at %s", self.url)
            return

    async def _on_error(self, exc: Exception) -> None:
        log.debug("NATS error: %s", exc)

    async def _on_disconnect(self) -> None:
        metrics.NATS_CONNECTED.set(0)
        if self._closing:  # our own close at shutdown: nothing to warn of
            return
        metrics.NATS_DISCONNECTS.inc()
        log.warning("disconnected from NATS; falling back to database sweeps")

    async def _on_reconnect(self) -> None:
        metrics.NATS_CONNECTED.set(1)
        log.info("reconnected to NATS")

    async def _subscribe(self, kind: str, handler: Handler) -> None:
        assert self._nc is not None

        async def on_msg(msg: Msg) -> None:
            try:
                result = handler(json.loads(msg.data))
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("handler for %s failed", msg.subject)

        await self._nc.subscribe(self.subject(kind), cb=on_msg)

    async def subscribe(self, kind: str, handler: Handler) -> None:
        """Calls handler with every message of this kind, now and after reconnects."""
        self._subs.append((kind, handler))
        if self._nc is not None:
            await self._subscribe(kind, handler)

    async def publish(self, kind: str, message: dict[str, Any]) -> None:
        """Sends a notification; drops it (counted) when NATS is unreachable."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            self.dropped += 1
            metrics.NATS_DROPPED.inc()
            return
        try:
            await nc.publish(self.subject(kind), json.dumps(message).encode())
        except Exception as exc:
            self.dropped += 1
            metrics.NATS_DROPPED.inc()
            log.warning("NATS publish of %s dropped: %s", kind, exc)

    async def flush(self, timeout: int = FLUSH_TIMEOUT) -> None:
        """Until NATS has every message published so far (a round trip), or the
        timeout passed, or at once while NATS is down."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.flush(timeout)
        except Exception as exc:
            log.debug("NATS flush: %s", exc)

    async def close(self) -> None:
        self._closing = True
        metrics.NATS_CONNECTED.set(0)
        if self._connector is not None:
            self._connector.cancel()
        if self._nc is not None:
            try:
                await self._nc.drain()
            except Exception as exc:
                log.debug("NATS drain on close: %s", exc)
