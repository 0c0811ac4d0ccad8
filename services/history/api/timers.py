"""Firing due timers: leases (a crashed attempt), deadlines, retry backoffs,
delays, ttls, wake-ups and signals of waits, and rate-limit readiness. The
timer loop (services/history/timers.py) decides when; this decides what."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cairn import error_types
from services.history.api import wait as waits
from services.history.api.finish import fail
from services.history.api.transition import Conn, Effects, Outcome, Row, end_run
from services.history.sql import attempts as attempts_sql
from services.history.sql import timers as sql


async def next_due(pool: asyncpg.Pool) -> datetime | None:
    """The earliest timer or schedule tick."""
    async with pool.acquire() as conn:
        due: datetime | None = await conn.fetchval(sql.NEXT_DUE)
        return due


async def due_timers(pool: asyncpg.Pool, limit: int = 200) -> list[Row]:
    """Due timers (run_id, kind), earliest first."""
    async with pool.acquire() as conn:
        return await conn.fetch(sql.DUE_TIMERS, limit)


async def fire_timer(
    pool: asyncpg.Pool, lease_seconds: float, run_id: uuid.UUID, kind: str
) -> Outcome | None:
    """Fires one due timer. None when another replica has the run locked, the
    timer moved (a heartbeat extended the lease), or it no longer applies."""
    async with pool.acquire() as conn, conn.transaction():
        run = await conn.fetchrow(sql.LOCK_RUN_UNLESS_LOCKED, run_id)
        if run is None:
            if not await conn.fetchval(sql.RUN_EXISTS, run_id):  # a timer of a run that is gone: drop it
                await conn.execute(sql.DROP_TIMER, run_id, kind)
            return None
        attempt = await conn.fetchval(sql.TAKE_DUE_TIMER, run_id, kind)
        if attempt is None:
            return None
        return await _fire(conn, lease_seconds, run, kind, attempt)


async def _fire(conn: Conn, lease_seconds: float, run: Row, kind: str, attempt: int) -> Outcome | None:
    status = run["status"]
    current = status == "executing" and run["attempt_count"] == attempt
    if kind == "lease" and current:
        worker = await conn.fetchval(attempts_sql.ATTEMPT_WORKER, run["id"], attempt)
        return await fail(
            conn,
            run,
            "crashed",
            {
                "type": error_types.LEASE_EXPIRED,
                "non_retryable": False,
                "stack_trace": "",
                "message": f"worker {worker} stopped heartbeating; the lease of attempt {attempt} "
                f"expired after {lease_seconds:g}s",
            },
        )
    if kind == "deadline" and current:
        limit = (run["max_duration_ms"] or 0) / 1000
        return await end_run(
            conn,
            run,
            "timed_out",
            attempt_status="timed_out",
            error={
                "type": error_types.MAX_DURATION_EXCEEDED,
                "non_retryable": True,
                "stack_trace": "",
                "message": f"run {run['id']} executed longer than its max_duration of {limit:g}s",
            },
        )
    if kind == "retry" and status == "retrying":
        return await waits.requeue(conn, run, "retry")
    if kind == "delay" and status == "delayed":
        return await waits.requeue(conn, run, "delay elapsed")
    if kind == "ttl" and status in ("queued", "delayed") and run["attempt_count"] == 0:
        ttl = (run["ttl_ms"] or 0) / 1000
        return await end_run(
            conn,
            run,
            "expired",
            error={
                "type": error_types.EXPIRED,
                "non_retryable": True,
                "stack_trace": "",
                "message": f"run {run['id']} was not started within its ttl of {ttl:g}s",
            },
        )
    if kind in ("wake", "signal"):
        return await waits.check(conn, run, timed_out=kind == "wake")
    if kind == "ready" and status == "queued":
        return Outcome(run, Effects(work_ready=True))
    return None
