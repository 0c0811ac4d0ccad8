"""Announcing committed transitions on NATS: work for matching's pollers, run
changes for waiters, timers for every history replica's timer loop, logged
events for the runs some frontend watches (Interest); and counting them (runs created, attempts started, runs ended: services/common/metrics.py),
here because every committed transition passes once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.common import bus as bus_mod
from services.common import metrics
from services.common.bus import Bus
from services.history.api.claim import Claimer
from services.history.api.transition import Effects, Outcome, Row


class Interest:
    """The run ids and namespaces the frontends say they watch (bus.INTEREST
    messages, from every frontend), each until its ttl passes without a
    refresh. A history replica that started or reconnected meanwhile learns
    them at the next refresh; until then the watchers' periodic re-read
    covers what it does not announce."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._runs: dict[str, float] = {}  # run id -> when its interest expires
        self._namespaces: dict[str, float] = {}
        self._next_purge = 0.0

    def on_message(self, message: dict[str, Any]) -> None:
        """A frontend announced (or refreshed) its watched runs and namespaces."""
        now = self._clock()
        ttl = float(message.get("ttl", bus_mod.INTEREST_TTL_SECONDS))
        until = now + max(0.0, min(ttl, bus_mod.INTEREST_MAX_TTL_SECONDS))
        for table, key in ((self._runs, "run_ids"), (self._namespaces, "namespaces")):
            for name in message.get(key) or ():
                name = str(name)
                if table.get(name, 0.0) < until:
                    table[name] = until
        if now >= self._next_purge:  # the expired, at most once per refresh interval
            self._next_purge = now + bus_mod.INTEREST_REFRESH_SECONDS
            for table in (self._runs, self._namespaces):
                for name in [n for n, expiry in table.items() if expiry <= now]:
                    del table[name]

    def watched(self, namespace: str, run_id: str) -> bool:
        """Whether a frontend watches the run or its namespace."""
        if not self._runs and not self._namespaces:  # nobody watches: the common case
            return False
        now = self._clock()
        return self._runs.get(run_id, 0.0) > now or self._namespaces.get(namespace, 0.0) > now


# A watched run's "events" notices go out at most this often. A run recording
# steps back to back would send one per step (about 0.6 ms of CPU each over
# history, NATS and the frontend), while the frontend's feed of the run reads it
# at most every 25 ms anyway (services/frontend/run_feeds.py). The first event
# after a quiet spell is announced at once; the later ones of a burst together,
# this long after the notice before them.
EVENTS_NOTICE_INTERVAL = 0.02


class NoticePacer:
    """Paces the notices of each run: publish(namespace, run_id) at once when the
    run's last notice is EVENTS_NOTICE_INTERVAL old, else once when it will be
    (a notice only says "read again"; the one after a burst covers all of it)."""

    def __init__(
        self, publish: Callable[[str, str], Awaitable[None]], interval: float = EVENTS_NOTICE_INTERVAL
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}  # (namespace, run id) -> its last notice
        self._due: dict[tuple[str, str], asyncio.TimerHandle] = {}  # a notice is scheduled
        self._sending: set[asyncio.Task[None]] = set()
        self._next_purge = 0.0

    async def notice(self, namespace: str, run_id: str) -> None:
        loop = asyncio.get_running_loop()
        now, key = loop.time(), (namespace, run_id)
        last = self._last.get(key)
        if last is None or now - last >= self._interval:
            self._last[key] = now
            self._purge(now)
            await self._publish(namespace, run_id)
        elif key not in self._due:
            self._due[key] = loop.call_at(last + self._interval, self._send, key)

    async def close(self) -> None:
        """Sends the scheduled notices now (history is stopping: a watcher
        would otherwise see the end of a burst only at its periodic re-read)."""
        due, self._due = self._due, {}
        for handle in due.values():
            handle.cancel()
        for key in due:
            await self._publish(*key)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send(self, key: tuple[str, str]) -> None:
        self._due.pop(key, None)
        self._last[key] = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(self._publish(*key))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _purge(self, now: float) -> None:
        """Forgets the runs whose last notice is old, at most once per interval."""
        if now < self._next_purge:
            return
        self._next_purge = now + self._interval
        for key in [k for k, at in self._last.items() if now - at >= self._interval and k not in self._due]:
            del self._last[key]


class Announcer:
    """Publishes what committed transitions changed."""

    def __init__(self, bus: Bus, claimer: Claimer, interest: Interest | None = None) -> None:
        self.bus = bus
        self.claimer = claimer
        self.interest = interest if interest is not None else Interest()
        self.poke_timers: list[Callable[[], None]] = []  # the local timer loop's poke
        self._events = NoticePacer(self._publish_events)

    async def effects(self, effects: Effects, run: Row | None = None) -> None:
        """Publishes the effects of one transition (of `run`, when it has one)."""
        for namespace, task, queue in effects.created:
            metrics.run_created(namespace, task, queue)
        if run is not None and effects.run_changed:
            metrics.run_changed(run)
        work = set(effects.work_keys)
        if run is not None and effects.work_ready:
            work.add((run["namespace"], run["task_id"]))
        keyed = run is not None and bool(run["concurrency_key"])
        if run is not None and keyed and work:  # this replica's claims look for keys again at once
            self.claimer.keyed_runs_seen(run["namespace"])
        for ns, task_id in work:
            notice: dict[str, Any] = {"namespace": ns, "task_id": task_id}
            if keyed:  # claims serve keyed queues round-robin; tell every replica this one is
                notice["keyed"] = True
            await self.bus.publish(bus_mod.WORK, notice)
        if run is not None and effects.run_changed:
            await self.bus.publish(
                bus_mod.RUNS,
                {
                    "namespace": run["namespace"],
                    "run_id": str(run["id"]),
                    "task_id": run["task_id"],
                    "queue": run["queue"],
                    "status": run["status"],
                },
            )
        if effects.timer_due is not None:
            for poke in self.poke_timers:
                poke()
            await self.bus.publish(bus_mod.TIMERS, {"due_at": effects.timer_due.isoformat()})

    async def logged(self, namespace: str, run_id: str) -> None:
        """A run's event was logged without a change of status (a step record,
        a metadata update): wakes its watchers (the frontend's WatchRun and
        WatchRuns), when a frontend has announced any; publishing for every
        step cost about 0.6 ms of CPU per step with nobody watching (bench/README.md).
        A run's notices are paced (NoticePacer)."""
        if self.interest.watched(namespace, run_id):
            await self._events.notice(namespace, run_id)

    async def close(self) -> None:
        """Sends what is still scheduled, before the bus closes."""
        await self._events.close()

    async def _publish_events(self, namespace: str, run_id: str) -> None:
        await self.bus.publish(bus_mod.EVENTS, {"namespace": namespace, "run_id": run_id})

    async def outcome(self, outcome: Outcome) -> None:
        """Publishes a transition's effects."""
        await self.effects(outcome.effects, outcome.run)
