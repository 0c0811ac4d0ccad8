"""The timer loop: sleeps until the earliest due timer or schedule tick (or until told of an
earlier one, locally or by another history replica over NATS), then fires
every due timer, each in its own transaction. The sweep interval only caps the
sleep as a safety net. Nothing fires before this replica has beaten its
liveness (liveness.py): after a time no history replica ran, the leases that
fell due meanwhile get their grace first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from services.history.api import timers
from services.history.api.transition import Outcome
from services.history.liveness import Liveness
from services.history.schedules import ScheduleStore

log = logging.getLogger("cairn.history.timers")


class TimerLoop:
    """Fires leases, retry backoffs and wake-ups when they fall due."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        lease_seconds: float,
        schedules: ScheduleStore,
        announce: Callable[[Outcome], Awaitable[None]],
        max_sleep: float,
        liveness: Liveness | None = None,
    ) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.schedules = schedules
        self.announce = announce
        self.max_sleep = max_sleep
        self.liveness = liveness
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """A timer was set: re-check when to wake."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self._fire_due()
                self._wake.clear()
                due = await timers.next_due(self.pool)
                timeout = self.max_sleep
                if due is not None:
                    timeout = min(timeout, max(0.0, (due - datetime.now(UTC)).total_seconds()))
                if timeout > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer loop failed; retrying")
                await asyncio.sleep(self.max_sleep)

    async def _fire_due(self) -> None:
        """Run timers first, then schedule ticks: a tick that fails (and is
        retried at the next pass) never holds up leases and retries."""
        await self._alive()
        await self._fire_run_timers()
        while True:
            fired, outcome = await self.schedules.fire_due()
            if not fired:
                break
            if outcome is not None:
                await self.announce(outcome)

    async def _alive(self) -> None:
        if self.liveness is not None:
            await self.liveness.ensure()

    async def _fire_run_timers(self) -> None:
        while True:
            await self._alive()  # a long backlog: still beaten, each batch
            due = await timers.due_timers(self.pool)
            if not due:
                return
            fired = 0
            for row in due:
                outcome = await timers.fire_timer(self.pool, self.lease_seconds, row["run_id"], row["kind"])
                if outcome is not None:
                    fired += 1
                    await self.announce(outcome)
            if fired == 0:
                # Every due run is locked by a concurrent transaction or another
                # replica; yield briefly instead of spinning on the same rows.
                await asyncio.sleep(0.05)
                return
