"""Replaying a run: a new run of the original's task with its payload and
options, created as any trigger is (api/trigger.py), with replay_of naming the
original (on the run and in its 'triggered' event). The original may be in any
status and is not changed.

What the new run takes from the original: input and its encoding, priority,
tags, metadata (as the original holds it now: a task may have updated it),
concurrency key, ttl and max_duration (the original's effective one, which is
the task's when the trigger named none). What it does not: a delay (it is
queued at once), the idempotency key (a replay is a new run on purpose), the
parent and the schedule (it is nobody's child), nor the trace context: a replay
starts a new trace (it is a new run, asked for later and by someone else, and one
trace per run keeps a trace's spans one run's story; replay_of leads to the
original and its trace_id). The retry policy and queue are the task's as
registered now, as for any trigger."""

from __future__ import annotations

import uuid

import asyncpg

from services.common.errors import not_found
from services.history.api import trigger
from services.history.api.transition import NewRun, Outcome, Row, RunOptions
from services.history.sql import reads as reads_sql


def replay_of(original: Row) -> NewRun:
    """The run that replays `original` (a runs row)."""
    return NewRun(
        namespace=original["namespace"],
        task_id=original["task_id"],
        data=original["input"],
        encoding=original["input_encoding"],
        options=RunOptions(
            ttl=original["ttl_ms"] / 1000 if original["ttl_ms"] else None,
            priority=original["priority"],
            tags=list(original["tags"]),
            metadata=dict(original["metadata"] or {}),
            max_duration=original["max_duration_ms"] / 1000 if original["max_duration_ms"] else None,
            concurrency_key=original["concurrency_key"] or "",
        ),
        replay_of=original["id"],
    )


async def replay(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID) -> Outcome:
    """Creates the replay of a run; NOT_FOUND (nothing written) for an unknown
    run, or when its task is no longer registered."""
    async with pool.acquire() as conn:
        original = await conn.fetchrow(reads_sql.RUN, run_id, namespace)
        if original is None:
            raise not_found(f"run {run_id} not found in namespace {namespace!r}")
        outcome, _ = await trigger.trigger(conn, replay_of(original))
    return outcome
