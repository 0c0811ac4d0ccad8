"""Triggering runs: one statement for the usual run (sql.runs.TRIGGER), the
general transaction for options with timers, keys or a queue depth limit, and
for refusals. Both write the run, its event and its queue entry with the same
fragments (sql/rows.py). A child's parent_run_id must be a run of the caller's
namespace: TRIGGER checks it in its own statement, create_run in its
transaction."""

from __future__ import annotations

import uuid

import asyncpg
import grpc

from cairn import tracing
from cairn.limits import REQUEST_ID_WINDOW_SECONDS
from services.common.errors import ServiceError, not_found
from services.history.api.transition import Conn, Effects, NewRun, Outcome, Row, set_timer
from services.history.sql import runs as sql


def _insert_args(run_id: uuid.UUID, new: NewRun) -> tuple[object, ...]:
    """The parameters of sql.rows.INSERT_RUN."""
    opts = new.options
    return (
        run_id,
        new.namespace,
        new.task_id,
        new.data,
        new.encoding,
        new.idempotency_key,
        new.parent_run_id,
        opts.priority,
        opts.tags,
        opts.metadata,
        round(opts.max_duration * 1000) if opts.max_duration else None,
        new.schedule_id,
        opts.delay,
        round(opts.ttl * 1000) if opts.ttl else None,
        opts.concurrency_key,
        new.replay_of,
        tracing.valid_or_new(opts.traceparent),
        new.request_id,
    )


def _created(run: Row) -> tuple[str, str, str]:
    return run["namespace"], run["task_id"], run["queue"]


async def trigger(conn: Conn, new: NewRun) -> tuple[Outcome, bool]:
    """Creates a run (or finds it by idempotency key or request id: then True).
    The usual run is one statement; options with timers or limits, and a key
    or request id already taken, take a transaction."""
    opts = new.options
    if not (opts.delay > 0 or opts.ttl or opts.concurrency_key):
        run = await conn.fetchrow(sql.TRIGGER, *_insert_args(uuid.uuid4(), new))
        if run is not None:
            effects = Effects(run_changed=True, work_ready=True, created=[_created(run)])
            return Outcome(run, effects), False
    async with conn.transaction():
        outcome, created = await create_run(conn, new)
    return outcome, not created


async def trigger_batch(pool: asyncpg.Pool, items: list[NewRun]) -> list[tuple[Outcome, bool]]:
    """Creates many runs in one transaction: all or none."""
    async with pool.acquire() as conn, conn.transaction():
        results = []
        for i, new in enumerate(items):
            try:
                outcome, created = await create_run(conn, new)
            except ServiceError as exc:
                field = "" if isinstance(exc, (ParentRefused, RequestIdTaken)) else "task_id: "
                raise ServiceError(exc.code, f"runs[{i}].{field}{exc.message}") from None
            results.append((outcome, not created))
    return results


async def check_depth(conn: Conn, namespace: str, queue: str) -> None:
    """Backpressure: refuses a run for a queue at its maximum depth. A queue with
    a depth limit is locked (the queue's advisory lock, as starts take it), so
    concurrent triggers of it count one after the other."""
    limit = await conn.fetchrow(sql.DEPTH_LIMIT_LOCKED, namespace, queue)
    if limit is None:
        return
    max_depth = limit["max_depth"]
    depth = await conn.fetchval(sql.QUEUE_DEPTH, namespace, queue)
    if depth >= max_depth:
        raise ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"queue {queue!r} is full: {depth} runs queued (max_depth {max_depth}); try again later",
        )


async def existing_request(conn: Conn, new: NewRun) -> Row | None:
    """The run new.request_id made in the namespace within the window
    (REQUEST_ID_WINDOW_SECONDS); None when it made none. One made before the
    window is forgotten (its request id cleared: the id is free again);
    one of another task is ALREADY_EXISTS naming request_id."""
    found = await conn.fetchrow(
        sql.RUN_BY_REQUEST_ID, new.namespace, new.request_id, REQUEST_ID_WINDOW_SECONDS
    )
    if found is None:
        return None
    if not found["recent"]:
        await conn.execute(sql.FORGET_REQUEST_ID, found["id"])
        return None
    if found["task_id"] != new.task_id:
        raise RequestIdTaken(new, found["task_id"])
    return found


class RequestIdTaken(ServiceError):
    """ALREADY_EXISTS: a request id that a trigger of another task sent within
    the window (a request id names one trigger, and its retries)."""

    def __init__(self, new: NewRun, task_id: str) -> None:
        super().__init__(
            grpc.StatusCode.ALREADY_EXISTS,
            f"request_id: {new.request_id!r} was sent with a trigger of task {task_id!r}; "
            "make a new request id for each trigger",
        )


class ParentRefused(ServiceError):
    """NOT_FOUND: a parent_run_id that names no run of the caller's namespace.
    An unknown id and another namespace's run get the same answer, as every
    read of a run of another namespace does, so it tells nothing of them."""

    def __init__(self, new: NewRun) -> None:
        super().__init__(
            grpc.StatusCode.NOT_FOUND,
            f"parent_run_id: run {new.parent_run_id} not found in namespace {new.namespace!r}",
        )


async def create_run(conn: Conn, new: NewRun, *, parent_known: bool = False) -> tuple[Outcome, bool]:
    """Creates a queued (or delayed) run with its event, queue entry and timers;
    with an idempotency key already used for the task, or a request id that made
    a run within its window (existing_request), returns that run and False.
    A parent_run_id must name a run of the namespace (ParentRefused), unless the
    caller has it already (parent_known: a children wait, whose parent is the
    suspending run itself)."""
    task = await conn.fetchrow(sql.TASK, new.namespace, new.task_id)
    if task is None:
        raise not_found(
            f"task {new.task_id!r} is not registered in namespace {new.namespace!r}; "
            "start a worker that serves it"
        )
    opts = new.options
    if new.idempotency_key is not None:
        existing = await conn.fetchrow(
            sql.RUN_BY_IDEMPOTENCY_KEY, new.namespace, new.task_id, new.idempotency_key
        )
        if existing is not None:  # a retry: the first run, even if the queue filled up since
            return Outcome(existing), False
    if new.request_id is not None and (existing := await existing_request(conn, new)) is not None:
        return Outcome(existing), False
    if new.parent_run_id is not None and not parent_known:
        if await conn.fetchval(sql.PARENT, new.parent_run_id, new.namespace) is None:
            raise ParentRefused(new)
    await check_depth(conn, new.namespace, task["queue"])
    run = await conn.fetchrow(sql.CREATE_RUN, *_insert_args(uuid.uuid4(), new))
    if run is None:  # a concurrent trigger with the same key or request id committed first
        existing = None
        if new.idempotency_key is not None:
            existing = await conn.fetchrow(
                sql.RUN_BY_IDEMPOTENCY_KEY, new.namespace, new.task_id, new.idempotency_key
            )
        if existing is None and new.request_id is not None:
            existing = await existing_request(conn, new)
        assert existing is not None
        return Outcome(existing), False
    if opts.concurrency_key:
        await conn.execute(sql.ADD_CONCURRENCY_KEYS, new.namespace, run["queue"], opts.concurrency_key)
    effects = Effects(run_changed=True, created=[_created(run)])
    if run["status"] == "delayed":
        await set_timer(conn, run["id"], "delay", 0, run["next_attempt_at"])
        effects.timer_due = run["next_attempt_at"]
    else:
        effects.work_ready = True
    if opts.ttl:
        due = await conn.fetchval(sql.TTL_DUE, run["created_at"], opts.ttl)
        await set_timer(conn, run["id"], "ttl", 0, due)
        effects.merge_timer(due)
    return Outcome(run, effects), True
