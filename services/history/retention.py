"""Retention: history deletes finished runs older than the configured age, with
every row that belongs to them, so the history tables (and the cost of
dispatch) stay flat however long a cluster runs.

Not the hot path, and built so it never slows it:

- A pass picks at most BATCH_RUNS runs per transaction, oldest first, through the
  partial index runs_finished (migration 0004), and locks them with
  ``FOR UPDATE SKIP LOCKED``: a run that a hot-path transaction holds (say a
  cancel or an event refused as "already finished") is left for the next pass,
  never waited on. Several history replicas prune side by side the same way.
  ``lock_timeout`` bounds any other wait, so the pruner cannot hold its picked
  rows for long behind someone else.
- Only terminal runs are picked (finished_at is set exactly when a run ends, and
  a terminal status never changes), so no transition can apply to a picked run.
- A child run is kept while its parent is unfinished: a parent waiting on its
  children reads their rows when it resumes (services/history/api/wait.py
  ``check``). Once the parent has finished (or is gone) the child may go.
  A run's own children may outlive it; a child that ends later signals its
  parent through a timer row, which the timer loop drops when the run is gone.
- Wait tokens made by a pruned run go with it, unless some waiting run still
  waits on the token.
- Idempotency keys are in the runs rows, so the key of a pruned run can be used
  again. A schedule's last_run_id may name a pruned run (it is informational).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg

from cairn.statuses import TERMINAL_RUN_STATUSES
from services.history.sql import retention as sql

log = logging.getLogger("cairn.history.retention")

BATCH_RUNS = 500
FAILURE_MESSAGE = "retention pass failed; retrying at the next pass"


class Pruner:
    """Every `interval` seconds deletes the runs that finished more than
    `retention` seconds ago, BATCH_RUNS per transaction, until a batch is short."""

    def __init__(
        self, pool: asyncpg.Pool, retention: float, interval: float, batch: int = BATCH_RUNS
    ) -> None:
        if retention <= 0 or interval <= 0:
            raise ValueError(f"retention ({retention}) and interval ({interval}) must be > 0")
        self.pool = pool
        self.retention = retention
        self.interval = interval
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        log.info(
            "retention: finished runs older than %g days are pruned every %g s",
            self.retention / 86400,
            self.interval,
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Cancels the loop and waits until a batch in flight has rolled back, so
        the pool can close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def prune_once(self) -> int:
        """One pass: deletes every run past the retention (that nothing else has
        locked); returns how many."""
        total = 0
        while True:
            pruned = await self._prune_batch()
            total += pruned
            if pruned < self.batch:
                return total

    async def _prune_batch(self) -> int:
        """One transaction: picks up to `batch` runs and deletes them with their rows."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.LOCK_TIMEOUT)
            ids: list[uuid.UUID] = [
                r["id"]
                for r in await conn.fetch(sql.PICK, self.retention, list(TERMINAL_RUN_STATUSES), self.batch)
            ]
            if ids:
                for statement in sql.DELETES:
                    await conn.execute(statement, ids)
        return len(ids)

    async def _run(self) -> None:
        """A pass at start (a cluster that was down catches up), then every
        interval. A failed pass is logged with its traceback and the loop goes
        on: pruning late is harmless, stopping history for it is not."""
        while True:
            try:
                pruned = await self.prune_once()
                if pruned:
                    log.info(
                        "retention: pruned %d finished runs older than %g days",
                        pruned,
                        self.retention / 86400,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(FAILURE_MESSAGE)
            await asyncio.sleep(self.interval)
