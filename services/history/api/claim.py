"""Claiming ready runs for a polling worker. History owns the ready set
(queue_entries), so the claim is its statement: matching's long-poll asks
ClaimAttempts when woken, and the claimed runs are then started like any
StartAttempts (see start.py). A claim that loses a race, or whose start never
happens, simply expires after the claim seconds."""

from __future__ import annotations

import time
import uuid

import asyncpg

from services.history.api.transition import Conn
from services.history.sql import claim as sql

UNKEYED_CACHE_SECONDS = 1.0


class Claimer:
    """Claims ready queue entries with SKIP LOCKED."""

    def __init__(self, pool: asyncpg.Pool, claim_seconds: float) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds
        self._keyed_first = True
        self._keyed: set[tuple[str, tuple[str, ...]]] = set()
        self._unkeyed: dict[tuple[str, tuple[str, ...]], float] = {}

    async def _has_keys(self, conn: Conn, namespace: str, task_ids: list[str]) -> bool:
        """Whether any of these tasks' queues has keyed runs. A queue's keys are
        never removed, so a yes is remembered for good; a no until a keyed run
        is announced (or for a second, should that notice be lost), so the
        round trip is not paid on every claim."""
        cache_key = (namespace, tuple(task_ids))
        if cache_key in self._keyed:
            return True
        if time.monotonic() < self._unkeyed.get(cache_key, 0.0):
            return False
        keyed = bool(await conn.fetchval(sql.HAS_KEYS, namespace, task_ids))
        if keyed:
            self._keyed.add(cache_key)
        else:
            self._unkeyed[cache_key] = time.monotonic() + UNKEYED_CACHE_SECONDS
        return keyed

    def keyed_runs_seen(self, namespace: str) -> None:
        """A keyed run was queued in the namespace: check for keys again."""
        for cache_key in [k for k in self._unkeyed if k[0] == namespace]:
            del self._unkeyed[cache_key]

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
                rows = await conn.fetch(sql.CLAIM, namespace, task_ids, token, self.claim_seconds, limit)
                return [r["run_id"] for r in rows], token
            # Keyed and unkeyed queues take turns going first, so neither starves
            # the other; the second fills what the first left of the limit.
            self._keyed_first = not self._keyed_first
            order = (
                (sql.FAIR_CLAIM, sql.UNKEYED_CLAIM)
                if self._keyed_first
                else (sql.UNKEYED_CLAIM, sql.FAIR_CLAIM)
            )
            rows = []
            for statement in order:
                rows += await conn.fetch(
                    statement, namespace, task_ids, token, self.claim_seconds, limit - len(rows)
                )
                if len(rows) >= limit:
                    break
        return [r["run_id"] for r in rows], token

    async def release(self, run_ids: list[uuid.UUID], token: uuid.UUID) -> None:
        """Gives claims back at once (their start failed)."""
        async with self.pool.acquire() as conn:
            await conn.execute(sql.RELEASE, run_ids, token)
