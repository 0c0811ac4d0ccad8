"""Handing queued runs to long-polling workers.

A poll first tries to claim ready entries (up to the worker's free slots, in
one statement); with none, it waits on the keys (namespace, task) it serves
until a NATS "work" notice or the database sweep wakes it, or its wait ends. A
claim is a row state with an expiry (claim_token, claimed_until), never an open
transaction; history then starts the attempts and deletes their entries in one
transaction, so a claim that loses a race, or whose claimer dies, is simply
dropped or expires."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict

import asyncpg

log = logging.getLogger("cairn.matching.dispatch")

Key = tuple[str, str]  # (namespace, task_id)
UNKEYED_CACHE_SECONDS = 1.0


class Waiters:
    """Pollers waiting per key, woken one at a time in arrival order."""

    def __init__(self) -> None:
        self._by_key: dict[Key, list[asyncio.Event]] = defaultdict(list)

    def add(self, keys: list[Key]) -> asyncio.Event:
        event = asyncio.Event()
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

    def keys(self) -> list[Key]:
        return list(self._by_key)


# The gates of the namespace's queues: paused queues (key NULL, no room) and,
# per (queue, key) group of a queue with a concurrency limit, the room left.
_GATES = """
gates AS (
  SELECT q.name AS queue, NULL::text AS key, 0::bigint AS room FROM queues q
  WHERE q.namespace = $1 AND q.paused
  UNION ALL
  SELECT r.queue, r.concurrency_key, q.concurrency_limit - count(*) FROM runs r
  JOIN queues q ON q.namespace = r.namespace AND q.name = r.queue
  WHERE r.namespace = $1 AND r.status = 'executing' AND q.concurrency_limit > 0
  GROUP BY r.queue, r.concurrency_key, q.concurrency_limit),
limits AS (SELECT name AS queue, concurrency_limit FROM queues WHERE namespace = $1 AND concurrency_limit > 0)
"""
_READY = (
    "e.namespace = $1 AND e.task_id = ANY($2) AND e.available_at <= now() "
    "AND (e.claimed_until IS NULL OR e.claimed_until < now()) "
    "AND NOT EXISTS (SELECT 1 FROM gates g WHERE g.queue = e.queue "
    "AND (g.key IS NULL OR g.key = e.concurrency_key) AND g.room <= 0)"
)
_SET_CLAIM = (
    "UPDATE queue_entries SET claim_token = $3, claimed_until = now() + make_interval(secs => $4) "
    "WHERE run_id = ANY (ARRAY({})) RETURNING run_id"
)  # ARRAY(): picked once
# One index-ordered lookup per task (namespace, task_id, priority, available_at),
# then the best $5 of those, no more per group than its room: never a sort of
# the whole ready set, and no claims that history would refuse for the limit.
_PER_TASK = (
    "SELECT c.run_id FROM (SELECT c.*, row_number() OVER ("
    "  PARTITION BY c.queue, c.concurrency_key ORDER BY c.priority DESC, c.available_at) AS rank"
    " FROM unnest($2::text[]) AS t(task_id) CROSS JOIN LATERAL ("
    "  SELECT e.run_id, e.priority, e.available_at, e.queue, e.concurrency_key FROM queue_entries e"
    "  WHERE e.task_id = t.task_id AND {ready}{extra}"
    "  ORDER BY e.priority DESC, e.available_at LIMIT $5 FOR UPDATE OF e SKIP LOCKED) c) c"
    " WHERE c.rank <= coalesce("
    "  (SELECT g.room FROM gates g WHERE g.queue = c.queue AND g.key = c.concurrency_key),"
    "  (SELECT l.concurrency_limit FROM limits l WHERE l.queue = c.queue), $5)"
    " ORDER BY c.priority DESC, c.available_at LIMIT $5"
)
CLAIM = f"WITH {_GATES} " + _SET_CLAIM.format(_PER_TASK.format(ready=_READY, extra=""))
UNKEYED_CLAIM = f"WITH {_GATES} " + _SET_CLAIM.format(
    _PER_TASK.format(
        ready=_READY,
        extra=" AND NOT EXISTS (SELECT 1 FROM concurrency_keys k "
        "WHERE k.namespace = e.namespace AND k.queue = e.queue)",
    )
)
# One entry per key, the key served least recently first (round-robin).
FAIR_CLAIM = f"WITH {_GATES} " + _SET_CLAIM.format(
    "SELECT c.run_id FROM concurrency_keys k CROSS JOIN LATERAL ("
    f" SELECT e.run_id FROM queue_entries e WHERE e.queue = k.queue AND e.concurrency_key = k.key AND {_READY}"
    " ORDER BY e.priority DESC, e.available_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED) c "
    "WHERE k.namespace = $1 AND k.queue IN (SELECT t.queue FROM tasks t WHERE t.namespace = $1 "
    "AND t.task_id = ANY($2)) ORDER BY k.last_dispatched_at NULLS FIRST LIMIT $5"
)


class Claimer:
    """Claims ready queue entries with SKIP LOCKED."""

    def __init__(self, pool: asyncpg.Pool, claim_seconds: float) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds
        self._keyed_first = True
        self._keyed: set[tuple[str, tuple[str, ...]]] = set()
        self._unkeyed: dict[tuple[str, tuple[str, ...]], float] = {}
        self.limited_queues: set[tuple[str, str]] = set()

    async def _has_keys(self, conn: asyncpg.Connection, namespace: str, task_ids: list[str]) -> bool:
        """Whether any of these tasks' queues has keyed runs. A queue's keys are
        never removed, so a yes is remembered for good; a no until history
        announces a keyed run (or for a second, should that notice be lost), so
        the round trip is not paid on every claim."""
        cache_key = (namespace, tuple(task_ids))
        if cache_key in self._keyed:
            return True
        if time.monotonic() < self._unkeyed.get(cache_key, 0.0):
            return False
        keyed = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM concurrency_keys k JOIN tasks t ON t.namespace = k.namespace "
            "AND t.queue = k.queue WHERE k.namespace = $1 AND t.task_id = ANY($2))",
            namespace,
            task_ids,
        )
        if keyed:
            self._keyed.add(cache_key)
        else:
            self._unkeyed[cache_key] = time.monotonic() + UNKEYED_CACHE_SECONDS
        return keyed

    def keyed_runs_seen(self, namespace: str) -> None:
        """A keyed run was queued in the namespace: check for keys again."""
        for cache_key in [k for k in self._unkeyed if k[0] == namespace]:
            del self._unkeyed[cache_key]

    async def refresh_limited_queues(self) -> None:
        """The queues with a concurrency limit: whose ended runs free a slot."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT namespace, name FROM queues WHERE concurrency_limit > 0")
        self.limited_queues = {(r["namespace"], r["name"]) for r in rows}

    async def claim(
        self, namespace: str, task_ids: list[str], limit: int = 1
    ) -> tuple[list[uuid.UUID], uuid.UUID]:
        """Up to `limit` of the best ready entries, claimed under one token:
        (run ids, token). Queues with keyed runs are served round-robin over
        their keys (the key served least recently first, one entry per key in a
        claim), taking turns with the worker's unkeyed queues; within a key or
        an unkeyed queue, by priority, then arrival."""
        token = uuid.uuid4()
        async with self.pool.acquire() as conn:
            if not await self._has_keys(conn, namespace, task_ids):
                rows = await conn.fetch(CLAIM, namespace, task_ids, token, self.claim_seconds, limit)
                return [r["run_id"] for r in rows], token
            # Keyed and unkeyed queues take turns going first, so neither starves
            # the other; the second fills what the first left of the limit.
            self._keyed_first = not self._keyed_first
            order = (FAIR_CLAIM, UNKEYED_CLAIM) if self._keyed_first else (UNKEYED_CLAIM, FAIR_CLAIM)
            rows = []
            for sql in order:
                rows += await conn.fetch(
                    sql, namespace, task_ids, token, self.claim_seconds, limit - len(rows)
                )
                if len(rows) >= limit:
                    break
        return [r["run_id"] for r in rows], token

    async def release(self, run_ids: list[uuid.UUID], token: uuid.UUID) -> None:
        """Gives claims back at once (history could not be reached)."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE queue_entries SET claim_token = NULL, claimed_until = NULL "
                "WHERE run_id = ANY($1) AND claim_token = $2",
                run_ids,
                token,
            )

    async def ready_keys(self) -> list[Key]:
        """Keys with claimable entries: what the sweep wakes pollers for (a key
        whose queue is full is woken too; its poll finds nothing and waits again)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT namespace, task_id FROM queue_entries WHERE available_at <= now() "
                "AND (claimed_until IS NULL OR claimed_until < now())"
            )
        return [(r["namespace"], r["task_id"]) for r in rows]


class Sweeper:
    """The safety net for lost NATS notices: wakes pollers of keys with work."""

    def __init__(self, claimer: Claimer, waiters: Waiters, interval: float) -> None:
        self.claimer = claimer
        self.waiters = waiters
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.claimer.refresh_limited_queues()
                if not self.waiters.keys():
                    continue
                for key in await self.claimer.ready_keys():
                    self.waiters.wake(key, count=1 << 30)
            except Exception:
                log.exception("sweep failed")
