"""Ending an attempt: completed (one statement, sql.attempts.FINISH_COMPLETED,
built from the same fragments as every other run ending), failed (the retry
policy applies), suspended on a wait (wait.py) or released by a worker
shutting down (the run queued again at once, no retry used up)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from cairn import backoff, retry_policy
from services.common.errors import ServiceError
from services.history.api import wait as waits
from services.history.api.transition import (
    Conn,
    Effects,
    Outcome,
    Row,
    end_attempt,
    end_run,
    event,
    lock_attempt,
    set_timer,
)
from services.history.sql import attempts as sql
from services.history.sql import runs as runs_sql

COMPLETED_DETAILS = {"error_type": None}


async def finish_attempt(
    conn: Conn,
    namespace: str,
    run_id: uuid.UUID,
    attempt: int,
    outcome: str,
    output: bytes | None,
    encoding: str | None,
    error: dict[str, Any] | None,
    wait: dict[str, Any] | None,
    token: str,
) -> Outcome:
    """Ends the current attempt (given its token): completed, failed (retry policy applied),
    suspended on a wait, or released (handed back unfinished by a worker shutting
    down: the run is queued again at once, its failure count unchanged). A refused suspension (its wait's position is
    recorded or leaves a gap below it, a child's task is unknown) rolls back
    and leaves the attempt running. A completed attempt is one statement; the
    transaction below handles the rest and refusals."""
    if outcome == "completed":
        run = await conn.fetchrow(
            sql.FINISH_COMPLETED,
            run_id,
            attempt,
            "completed",
            None,
            None,
            "completed",
            output,
            encoding,
            None,
            COMPLETED_DETAILS,
            namespace,
            token,
        )
        if run is not None:
            effects = Effects(run_changed=True)
            if run["parent_run_id"] is not None:
                effects.timer_due = run["updated_at"]
            return Outcome(run, effects)
    async with conn.transaction():
        locked = await lock_attempt(conn, namespace, run_id, attempt, token)
        if outcome == "completed":  # FINISH_COMPLETED writes whenever the fence passes
            raise ServiceError(
                grpc.StatusCode.INTERNAL,
                f"attempt {attempt} of run {run_id} was neither completed nor refused",
            )
        if outcome == "suspended":
            assert wait is not None
            await waits.check_position(conn, locked, wait["position"])  # before any write
        await conn.execute(sql.DROP_ATTEMPT_TIMERS, run_id)
        if outcome == "suspended":
            assert wait is not None
            await end_attempt(conn, locked, "suspended")
            return await waits.suspend(conn, locked, wait)
        if outcome == "released":
            await end_attempt(conn, locked, "released")
            return await waits.requeue(conn, locked, f"attempt {attempt} released by its worker")
        return await fail(conn, locked, "failed", error)


async def fail(conn: Conn, run: Row, attempt_status: str, error: dict[str, Any] | None) -> Outcome:
    """Applies the run's retry policy after a failed or crashed attempt of a
    locked run. The policy counts failures, not attempts: resuming from a wait
    is no failure."""
    run_id = run["id"]
    settings = retry_policy.from_dict(run["retry"])
    failures = run["failure_count"] + 1
    await conn.execute(runs_sql.SET_FAILURE_COUNT, run_id, failures)
    if (error or {}).get("non_retryable") or not backoff.has_attempts_left(settings, failures):
        return await end_run(
            conn,
            run,
            "crashed" if attempt_status == "crashed" else "failed",
            attempt_status=attempt_status,
            attempt_error=error,
            error=error,
        )
    delay = backoff.backoff_seconds(settings, failures)
    await end_attempt(conn, run, attempt_status, error, round(delay * 1000))
    due = datetime.now(UTC) + timedelta(seconds=delay)
    await set_timer(conn, run_id, "retry", run["attempt_count"], due)
    retrying = await conn.fetchrow(runs_sql.SET_RETRYING, run_id, due)
    assert retrying is not None
    await event(
        conn,
        run_id,
        f"attempt_{attempt_status}",
        retrying["attempt_count"],
        error_type=(error or {}).get("type"),
        retry_delay=delay,
        due_at=due.isoformat(),
    )
    return Outcome(retrying, Effects(run_changed=True, timer_due=due), {"retry_delay": delay})
