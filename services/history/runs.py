"""Creating runs and the row-level pieces every transition shares: the event
log, run locks, fencing, and ending a run. Callers hold a transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import grpc

from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import ServiceError, invalid, not_found, precondition


@dataclass
class Effects:
    """What to announce once a transaction has committed."""

    run_changed: bool = False
    work_ready: bool = False
    timer_due: datetime | None = None
    work_keys: set[tuple[str, str]] = field(default_factory=set)  # other runs' (namespace, task)

    def merge_timer(self, due: datetime | None) -> None:
        if due is not None and (self.timer_due is None or due < self.timer_due):
            self.timer_due = due


@dataclass
class Outcome:
    """A transition's result and the notifications it owes."""

    run: asyncpg.Record
    effects: Effects = field(default_factory=Effects)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOptions:
    """Trigger options, validated by the frontend; durations in seconds."""

    delay: float = 0.0
    ttl: float | None = None
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    max_duration: float | None = None
    concurrency_key: str = ""


@dataclass
class NewRun:
    """One run to create."""

    namespace: str
    task_id: str
    data: bytes
    encoding: str
    idempotency_key: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    parent_run_id: uuid.UUID | None = None
    schedule_id: str | None = None


def parse_run_id(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise invalid(f"run_id: {run_id!r} is not a valid run id (a UUID)") from None


async def event(
    conn: asyncpg.Connection, run_id: uuid.UUID, type_: str, attempt: int = 0, **details: Any
) -> None:
    """Appends to the run's event log."""
    await conn.execute(
        "INSERT INTO run_events (run_id, type, attempt, details) VALUES ($1, $2, $3, $4)",
        run_id,
        type_,
        attempt,
        details,
    )


async def lock_run(
    conn: asyncpg.Connection, namespace: str, run_id: uuid.UUID, mode: str = "UPDATE"
) -> asyncpg.Record:
    """The run row, locked; NOT_FOUND outside its namespace."""
    row = await conn.fetchrow(
        f"SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR {mode}", run_id, namespace
    )
    if row is None:
        raise not_found(f"run {run_id} not found in namespace {namespace!r}")
    return row


def fence(run: asyncpg.Record, attempt: int) -> None:
    """Refuses a worker write unless `attempt` is the run's current executing attempt."""
    if run["status"] != "executing" or run["attempt_count"] != attempt:
        raise precondition(
            f"attempt {attempt} of run {run['id']} is no longer current "
            f"(run is {run['status']}, current attempt {run['attempt_count']}); abandon it"
        )


async def set_timer(
    conn: asyncpg.Connection, run_id: uuid.UUID, kind: str, attempt: int, due: datetime
) -> None:
    await conn.execute(
        "INSERT INTO timers (run_id, kind, attempt, due_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, "
        "due_at = EXCLUDED.due_at",
        run_id,
        kind,
        attempt,
        due,
    )


async def enqueue(conn: asyncpg.Connection, run: asyncpg.Record) -> None:
    """Puts the run in matching's ready set."""
    await conn.execute(
        "INSERT INTO queue_entries (run_id, namespace, task_id, queue, priority, concurrency_key) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id) DO NOTHING",
        run["id"],
        run["namespace"],
        run["task_id"],
        run["queue"],
        run["priority"],
        run["concurrency_key"],
    )


async def check_depth(conn: asyncpg.Connection, namespace: str, queue: str) -> None:
    """Backpressure: refuses a run for a queue at its maximum depth."""
    # Locked only when it has a depth limit: concurrent triggers of it count one after the other.
    max_depth = await conn.fetchval(
        "SELECT max_depth FROM queues WHERE namespace = $1 AND name = $2 AND max_depth > 0 FOR UPDATE",
        namespace,
        queue,
    )
    if not max_depth:
        return
    depth = await conn.fetchval(
        "SELECT count(*) FROM queue_entries WHERE namespace = $1 AND queue = $2", namespace, queue
    )
    if depth >= max_depth:
        raise ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"queue {queue!r} is full: {depth} runs queued (max_depth {max_depth}); try again later",
        )


async def create_run(conn: asyncpg.Connection, new: NewRun) -> tuple[Outcome, bool]:
    """Creates a queued (or delayed) run with its event, queue entry and timers;
    with an idempotency key already used for the task, returns that run and False."""
    task = await conn.fetchrow(
        "SELECT queue, retry, max_duration_ms FROM tasks WHERE namespace = $1 AND task_id = $2",
        new.namespace,
        new.task_id,
    )
    if task is None:
        raise not_found(
            f"task {new.task_id!r} is not registered in namespace {new.namespace!r}; "
            "start a worker that serves it"
        )
    opts = new.options
    if new.idempotency_key is not None:
        existing = await conn.fetchrow(
            "SELECT * FROM runs WHERE namespace = $1 AND task_id = $2 AND idempotency_key = $3",
            new.namespace,
            new.task_id,
            new.idempotency_key,
        )
        if existing is not None:  # a retry: the first run, even if the queue filled up since
            return Outcome(existing), False
    await check_depth(conn, new.namespace, task["queue"])
    max_ms = round(opts.max_duration * 1000) if opts.max_duration else task["max_duration_ms"]
    status = "delayed" if opts.delay > 0 else "queued"
    run = await conn.fetchrow(
        "INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, "
        "idempotency_key, retry, parent_run_id, priority, tags, metadata, ttl_ms, max_duration_ms, "
        "schedule_id, concurrency_key, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12, $13, $14, $15, $16, $18, CASE WHEN $17::float8 > 0 THEN now() + make_interval(secs => $17) END) "
        "ON CONFLICT (namespace, task_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
        "DO NOTHING RETURNING *",
        uuid.uuid4(),
        new.namespace,
        new.task_id,
        task["queue"],
        status,
        new.data,
        new.encoding,
        new.idempotency_key,
        task["retry"],
        new.parent_run_id,
        opts.priority,
        opts.tags,
        opts.metadata,
        round(opts.ttl * 1000) if opts.ttl else None,
        max_ms,
        new.schedule_id,
        opts.delay,
        opts.concurrency_key,
    )
    if run is None:
        existing = await conn.fetchrow(
            "SELECT * FROM runs WHERE namespace = $1 AND task_id = $2 AND idempotency_key = $3",
            new.namespace,
            new.task_id,
            new.idempotency_key,
        )
        return Outcome(existing), False
    if opts.concurrency_key:
        # The queue now has keyed runs: claims go round-robin over its keys ('' too).
        await conn.execute(
            "INSERT INTO concurrency_keys (namespace, queue, key) VALUES ($1, $2, $3), "
            "($1, $2, '') ON CONFLICT DO NOTHING",
            new.namespace,
            task["queue"],
            opts.concurrency_key,
        )
    await event(
        conn,
        run["id"],
        "triggered",
        idempotency_key=new.idempotency_key,
        parent_run_id=str(new.parent_run_id) if new.parent_run_id else None,
        schedule_id=new.schedule_id,
    )
    effects = Effects(run_changed=True)
    if status == "delayed":
        await set_timer(conn, run["id"], "delay", 0, run["next_attempt_at"])
        effects.timer_due = run["next_attempt_at"]
    else:
        await enqueue(conn, run)
        effects.work_ready = True
    if opts.ttl:
        due = await conn.fetchval(
            "SELECT $1::timestamptz + make_interval(secs => $2)", run["created_at"], opts.ttl
        )
        await set_timer(conn, run["id"], "ttl", 0, due)
        effects.merge_timer(due)
    return Outcome(run, effects), True


async def end_run(
    conn: asyncpg.Connection,
    run: asyncpg.Record,
    status: str,
    *,
    output: bytes | None = None,
    encoding: str | None = None,
    error: dict[str, Any] | None = None,
    **details: Any,
) -> Outcome:
    """Moves a run to a terminal status: clears its queue entry, timers and wait,
    records the event, and tells a waiting parent to look at its children."""
    assert status in TERMINAL_RUN_STATUSES
    run_id = run["id"]
    await conn.execute("DELETE FROM queue_entries WHERE run_id = $1", run_id)
    await conn.execute("DELETE FROM timers WHERE run_id = $1", run_id)
    await conn.execute("DELETE FROM waits WHERE run_id = $1", run_id)
    ended = await conn.fetchrow(
        "UPDATE runs SET status = $2, output = $3, output_encoding = $4, error = $5, "
        "finished_at = now(), updated_at = now(), next_attempt_at = NULL WHERE id = $1 RETURNING *",
        run_id,
        status,
        output,
        encoding,
        error,
    )
    await event(conn, run_id, status, run["attempt_count"], error_type=(error or {}).get("type"), **details)
    effects = Effects(run_changed=True)
    if run["parent_run_id"] is not None:
        # Only the parent's timer row is touched, never the parent run: a child
        # transaction holds no lock that a parent transaction could wait on.
        due = ended["updated_at"]  # now() of this transaction
        await set_timer(conn, run["parent_run_id"], "signal", 0, due)
        effects.timer_due = due
    return Outcome(ended, effects)
