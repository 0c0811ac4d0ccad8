"""Handing queued runs to long-polling workers.

A poll first tries to claim a ready entry; with none, it waits on the keys
(namespace, task) it serves until a NATS "work" notice or the database sweep
wakes it, or its wait ends. A claim is a row state with an expiry (claim_token,
claimed_until), never an open transaction; history then starts the attempt and
deletes the entry in one transaction, so a claim that loses a race, or whose
claimer dies, is simply dropped or expires."""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict

import asyncpg

log = logging.getLogger("cairn.matching.dispatch")

Key = tuple[str, str]  # (namespace, task_id)


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


class Claimer:
    """Claims ready queue entries with SKIP LOCKED."""

    def __init__(self, pool: asyncpg.Pool, claim_seconds: float) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds

    async def claim(self, namespace: str, task_ids: list[str]) -> tuple[uuid.UUID, uuid.UUID] | None:
        """(run_id, claim_token) of the best ready entry, or None."""
        token = uuid.uuid4()
        async with self.pool.acquire() as conn:
            run_id = await conn.fetchval(
                "WITH full_queues AS ("
                " SELECT q.name FROM queues q WHERE q.namespace = $1 AND q.concurrency_limit > 0"
                " AND (SELECT count(*) FROM runs r WHERE r.namespace = q.namespace AND r.queue = q.name"
                "      AND r.status = 'executing') >= q.concurrency_limit) "
                "UPDATE queue_entries SET claim_token = $3, "
                "claimed_until = now() + make_interval(secs => $4) WHERE run_id = ("
                " SELECT run_id FROM queue_entries WHERE namespace = $1 AND task_id = ANY($2)"
                " AND available_at <= now() AND (claimed_until IS NULL OR claimed_until < now())"
                " AND queue NOT IN (SELECT name FROM full_queues)"
                " ORDER BY priority DESC, available_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING run_id",
                namespace, task_ids, token, self.claim_seconds)
        return (run_id, token) if run_id is not None else None

    async def release(self, run_id: uuid.UUID, token: uuid.UUID) -> None:
        """Gives a claim back at once (history could not be reached)."""
        async with self.pool.acquire() as conn:
            await conn.execute("UPDATE queue_entries SET claim_token = NULL, claimed_until = NULL "
                               "WHERE run_id = $1 AND claim_token = $2", run_id, token)

    async def ready_keys(self) -> list[Key]:
        """Keys with claimable entries: what the sweep wakes pollers for (a key
        whose queue is full is woken too; its poll finds nothing and waits again)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT namespace, task_id FROM queue_entries WHERE available_at <= now() "
                "AND (claimed_until IS NULL OR claimed_until < now())")
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
            if not self.waiters.keys():
                continue
            try:
                for key in await self.claimer.ready_keys():
                    self.waiters.wake(key, count=1 << 30)
            except Exception:
                log.exception("sweep failed")




