"""Reading the event log after an event id, for the frontend's WatchRun and
WatchRuns: the log (run_events, ids from one sequence) is the order of a run's
changes and the point a watcher resumes from. Each event comes with its run as
read with the events (one snapshot, so never older than them), without its
input, which a watcher already knows and which may be large."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.common.errors import invalid, not_found
from services.history.api.transition import Row
from services.history.sql import reads as sql

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# How many ids of the log one namespace read scans at most, matching or not.
NAMESPACE_SCAN_IDS = 5000


@dataclass
class Events:
    """Events oldest first, the runs they belong to by id, and the id the log
    has been read up to."""

    events: Sequence[Row | Mapping[str, Any]]  # run_events rows, or the same as dicts
    runs: dict[uuid.UUID, Row]
    last_id: int
    more: bool = False


async def of_run(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID, after_id: int, limit: int) -> Events:
    """A run's events after after_id (0: from the start). NOT_FOUND for a run
    not in the namespace; INVALID_ARGUMENT when after_id is not its event."""
    if after_id < 0:
        raise invalid(f"after_event_id: {after_id} is negative")
    run = await pool.fetchrow(sql.RUN_EVENTS_AFTER, run_id, namespace, after_id, limit)
    if run is None:
        raise not_found(f"run {run_id} not found in namespace {namespace!r}")
    if not run["page_after_ok"]:
        raise invalid(f"after_event_id: {after_id} is not an event of run {run_id}")
    events = [
        {**e, "run_id": run_id, "at": EPOCH + timedelta(microseconds=e["at_us"])} for e in run["page_events"]
    ]
    last = events[-1]["id"] if events else after_id
    return Events(events, {run_id: run}, last, more=len(events) >= limit)


async def of_namespace(
    pool: asyncpg.Pool, namespace: str, task_id: str, tags: list[str], after_id: int, limit: int
) -> Events:
    """The events after after_id of the namespace's runs matching the filter,
    from at most NAMESPACE_SCAN_IDS ids of the log; after_id -1: none, only
    the last id (where a new watch starts)."""
    async with pool.acquire() as conn:
        last: int = await conn.fetchval(sql.LAST_EVENT_ID)
        if after_id < 0:
            return Events([], {}, last)
        if after_id > last:
            raise invalid(f"after_event_id: {after_id} is past the last event of the log ({last})")
        upto = min(last, after_id + NAMESPACE_SCAN_IDS)
        if upto <= after_id:
            return Events([], {}, after_id)
        events = await conn.fetch(
            sql.NAMESPACE_EVENTS_BETWEEN, after_id, upto, namespace, task_id or None, tags or None, limit
        )
        ids = list({e["run_id"] for e in events})
        runs = {r["id"]: r for r in await conn.fetch(sql.RUNS_BY_ID, ids)} if ids else {}
    if len(events) >= limit:
        upto = events[-1]["id"]
    return Events(list(events), runs, upto, more=upto < last)
