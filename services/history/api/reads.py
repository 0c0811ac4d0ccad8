"""Reading runs: one in full (GetRun, CancelRun's answer) and pages (ListRuns)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.common.errors import not_found
from services.history.api.transition import Row
from services.history.sql import reads as sql
from services.history.sql import steps as steps_sql
from services.history.sql import waits as waits_sql


async def get(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID) -> dict[str, Any]:
    """A run with its attempts, steps, events, children and wait."""
    async with pool.acquire() as conn:
        run = await conn.fetchrow(sql.RUN, run_id, namespace)
        if run is None:
            raise not_found(f"run {run_id} not found in namespace {namespace!r}")
        return {
            "run": run,
            "attempts": await conn.fetch(sql.ATTEMPTS, run_id),
            "steps": await conn.fetch(steps_sql.JOURNAL, run_id),
            "events": await conn.fetch(sql.EVENTS, run_id),
            "children": [r["id"] for r in await conn.fetch(sql.CHILDREN, run_id)],
            "wait": await conn.fetchrow(waits_sql.WAIT_OF_RUN, run_id),
            "wait_children": [r["child_run_id"] for r in await conn.fetch(sql.WAIT_CHILDREN, run_id)],
        }


async def list_runs(
    pool: asyncpg.Pool,
    namespace: str,
    task_id: str,
    statuses: list[str],
    tag: str,
    parent_run_id: uuid.UUID | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    *,
    queue: str = "",
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[Row]:
    """Runs newest first, `limit` of them, after the (created_at, id) cursor,
    created in [created_after, created_before) when given. The statement is the
    one whose index drives the most selective filter given (parent, task, tag,
    else time: a queue or a time range is read by time); the other filters are
    optional."""
    if parent_run_id is not None:
        statement = sql.LIST_RUNS_BY_PARENT
    elif task_id:
        statement = sql.LIST_RUNS_BY_TASK
    elif tag:
        statement = sql.LIST_RUNS_BY_TAG
    else:
        statement = sql.LIST_RUNS
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(sql.CUSTOM_PLANS)
        return await conn.fetch(
            statement,
            namespace,
            task_id or None,
            statuses or None,
            tag or None,
            parent_run_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
            queue or None,
            created_after,
            created_before,
        )
