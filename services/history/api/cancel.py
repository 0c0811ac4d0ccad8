"""Canceling a run (the servicer then cancels its unfinished children)."""

from __future__ import annotations

import uuid

import asyncpg

from cairn import error_types
from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import precondition
from services.history.api.transition import Outcome, end_run, lock_run
from services.history.sql import reads as reads_sql


async def cancel(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID, reason: str) -> Outcome:
    """Ends an unfinished run as canceled; an executing attempt is fenced off
    so its next checkpoint or heartbeat is refused. The caller then cancels
    the children listed in extra["children"], each in its own transaction."""
    async with pool.acquire() as conn, conn.transaction():
        run = await lock_run(conn, namespace, run_id)
        if run["status"] in TERMINAL_RUN_STATUSES:
            raise precondition(
                f"run {run_id} already finished as {run['status']}; only unfinished runs can be canceled"
            )
        outcome = await end_run(
            conn,
            run,
            "canceled",
            attempt_status="canceled" if run["status"] == "executing" else None,
            reason=reason,
            error={
                "type": error_types.CANCELED,
                "message": reason or "canceled by request",
                "stack_trace": "",
                "non_retryable": True,
            },
        )
        children = await conn.fetch(reads_sql.UNFINISHED_CHILDREN, run_id, list(TERMINAL_RUN_STATUSES))
        outcome.extra["children"] = [r["id"] for r in children]
    return outcome
