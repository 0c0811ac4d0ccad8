"""Time the cluster was down does not count against a lease.

Every running history replica says so about once a second, in one row
(history_liveness.seen_at, BEAT_SECONDS). A replica that finds the row older
than GAP_SECONDS, at its start or after it could not reach PostgreSQL, knows
that no replica ran in between: none fired a timer, and no worker could reach
one to heartbeat. The lease timers due after the last beat (those that fell due
while nothing ran, and those about to) then move to a grace of two leases from
now (grace_seconds): one for the rest of the cluster (frontend, matching) to
come back, one for the worker to heartbeat. So an attempt whose worker kept
running through a restart of the whole cluster goes on, and its finish is
accepted, instead of being crashed by lease expiry at start and done again.

Why this rule, with several replicas: a lease that fell due while some replica
ran was that replica's to fire, and it did; it is not forgiven (the row was
fresh), and a replica that restarts while another runs grants nothing. Fencing
is unchanged: the grace only moves timers that have not fired, so an attempt a
running history declared crashed stays crashed. The row is checked and beaten
under its row lock, so replicas starting together grant the grace once, and
the timer loop fires nothing before this replica has beaten since its start
or its last gap (TimerLoop calls ensure()). The cost of a false gap (every
replica stalled for GAP_SECONDS) is a crash detected one grace later."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from services.history.api.transition import Conn
from services.history.sql import liveness as sql

log = logging.getLogger("cairn.history.liveness")
BEAT_SECONDS = 1.0
# No beat for this long: no history replica was running.
GAP_SECONDS = 3.0


class Liveness:
    """This replica's beats, and the lease grace after a gap."""

    def __init__(
        self, pool: asyncpg.Pool, lease_seconds: float, beat: float = BEAT_SECONDS, gap: float = GAP_SECONDS
    ) -> None:
        self.pool = pool
        self.grace_seconds = 2 * lease_seconds
        self.beat_seconds = beat
        self.gap_seconds = gap
        self._last = -float("inf")  # monotonic time of this replica's last beat
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def ensure(self) -> None:
        """Returns once this replica has beaten recently (within a beat and a
        half); beats now otherwise, granting the grace after a gap. The timer
        loop calls it before it fires anything."""
        if time.monotonic() - self._last > 1.5 * self.beat_seconds:
            await self.beat()

    async def beat(self) -> None:
        """One beat: the row says now; after a gap, the grace first."""
        async with self._lock:
            started = time.monotonic()
            async with self.pool.acquire() as conn:
                if await conn.fetchval(sql.BEAT, self.gap_seconds) is None:
                    await self._after_gap(conn)
            self._last = started

    async def _after_gap(self, conn: Conn) -> None:
        async with conn.transaction():
            await conn.execute(sql.ENSURE_ROW)
            row = await conn.fetchrow(sql.LAST_SEEN, self.gap_seconds)
            assert row is not None
            if not row["gap"]:
                await conn.execute(sql.SEEN_NOW)  # another replica beat meanwhile: it ran
                return
            moved = await conn.fetchval(sql.GRACE, self.grace_seconds)
            await conn.execute(sql.SEEN_NOW)
        seen = row["seen_at"]
        since = "before this start" if seen is None else f"since {seen.isoformat(timespec='seconds')}"
        if moved:
            log.info(
                "no history replica ran %s: %d lease(s) due in that time or about to fall due get "
                "%gs from now, so workers that kept running can heartbeat again",
                since,
                moved,
                self.grace_seconds,
            )
        else:
            log.info("no history replica ran %s; no lease fell due meanwhile", since)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL unreachable: the timer loop fails too
                log.debug("liveness beat failed: %s", exc)
            await asyncio.sleep(self.beat_seconds)
