"""What every transition shares: its result (Outcome, Effects), the new-run
request, run locks, fencing, events, timers, and ending an attempt or a run.
Callers hold a transaction. Every transaction locks the run row first (then
queue entry, wait, timer); a transaction that starts from a token or a child
touches only the other run's timer row, never the run, so transitions never
deadlock."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import grpc

from cairn.statuses import TERMINAL_RUN_STATUSES
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import ServiceError, attempt_gone, invalid, not_found, precondition
from services.history.sql import attempts as attempts_sql
from services.history.sql import runs as sql

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

Row = asyncpg.Record
# A connection of its own or one from the pool: operations take either.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


@dataclass
class Effects:
    """What to announce once a transaction has committed."""

    run_changed: bool = False
    work_ready: bool = False
    timer_due: datetime | None = None
    work_keys: set[tuple[str, str]] = field(default_factory=set)  # other runs' (namespace, task)
    created: list[tuple[str, str, str]] = field(default_factory=list)  # new runs' (namespace, task, queue)

    def merge_timer(self, due: datetime | None) -> None:
        if due is not None and (self.timer_due is None or due < self.timer_due):
            self.timer_due = due


@dataclass
class Outcome:
    """A transition's result and the notifications it owes."""

    run: Row
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
    # W3C trace context to run in (cairn/tracing.py); '' or invalid: a new trace.
    traceparent: str = ""


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
    replay_of: uuid.UUID | None = None  # the run this one replays (ReplayRun)
    # The trigger's request id (TriggerRunRequest.request_id): a trigger sent
    # again with it answers the run it made (for limits.REQUEST_ID_WINDOW_SECONDS).
    request_id: str | None = None


def parse_run_id(run_id: str) -> uuid.UUID:
    """A run id from a request; INVALID_ARGUMENT when it is no UUID."""
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise invalid(f"run_id: {run_id!r} is not a valid run id (a UUID)") from None


async def event(conn: Conn, run_id: uuid.UUID, type_: str, attempt: int = 0, **details: Any) -> None:
    """Appends to the run's event log."""
    await conn.execute(sql.EVENT, run_id, type_, attempt, details)


async def lock_run(conn: Conn, namespace: str, run_id: uuid.UUID, *, shared: bool = False) -> Row:
    """The run row, locked (FOR SHARE when shared); NOT_FOUND outside its namespace."""
    row = await conn.fetchrow(sql.LOCK_RUN_SHARED if shared else sql.LOCK_RUN, run_id, namespace)
    if row is None:
        raise not_found(f"run {run_id} not found in namespace {namespace!r}")
    return row


# Why an attempt that is not the run's current executing one is gone, by the
# attempt's own status (then by the run's, for an attempt with no row).
_GONE_BY_STATUS = {
    "canceled": wpb.ATTEMPT_GONE_CANCELED,
    "timed_out": wpb.ATTEMPT_GONE_TIMED_OUT,
    "crashed": wpb.ATTEMPT_GONE_SUPERSEDED,
    "completed": wpb.ATTEMPT_GONE_ENDED,
    "failed": wpb.ATTEMPT_GONE_ENDED,
    "suspended": wpb.ATTEMPT_GONE_ENDED,
    "released": wpb.ATTEMPT_GONE_ENDED,
}


async def fence(conn: Conn, run: Row, attempt: int, token: str) -> None:
    """Refuses a worker write unless `attempt` is the run's current executing
    attempt: FAILED_PRECONDITION with the trailing metadata "cairn-attempt-gone"
    saying why (canceled, timed_out, superseded after its lease expired, or
    ended by the attempt itself); and, for the current attempt, unless `token`
    is its token (the run row read with it, sql.attempts.FENCE_RUN):
    PERMISSION_DENIED, since the writer is not the worker it was given to."""
    if run["status"] == "executing" and run["attempt_count"] == attempt:
        stored = run["attempt_token"]
        if stored is not None and hmac.compare_digest(stored.encode(), token.encode()):
            return
        raise ServiceError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"attempt {attempt} of run {run['id']}: attempt_token does not match the token of the "
            "attempt's assignment",
        )
    raise await gone(conn, run, attempt, f"(run is {run['status']}, current attempt {run['attempt_count']})")


async def lock_attempt(
    conn: Conn, namespace: str, run_id: uuid.UUID, attempt: int, token: str, *, shared: bool = False
) -> Row:
    """The run row of a worker's write to `attempt`, locked (FOR SHARE when
    shared), once the fence let it pass: NOT_FOUND outside its namespace."""
    row = await conn.fetchrow(
        attempts_sql.FENCE_RUN_SHARED if shared else attempts_sql.FENCE_RUN_LOCKED, run_id, namespace
    )
    if row is None:
        raise not_found(f"run {run_id} not found in namespace {namespace!r}")
    await fence(conn, row, attempt, token)
    return row


async def gone(conn: Conn, run: Row, attempt: int, why: str) -> ServiceError:
    """The refusal of a write or heartbeat of an attempt that is gone (see fence)."""
    message = f"attempt {attempt} of run {run['id']} is no longer current {why}; abandon it"
    status = await conn.fetchval(attempts_sql.ATTEMPT_STATUS, run["id"], attempt)
    reason = _GONE_BY_STATUS.get(status) or _GONE_BY_STATUS.get(run["status"])
    if reason is None:  # no such attempt, of a run that goes on
        return precondition(f"run {run['id']} has no attempt {attempt} {why}")
    return attempt_gone(message, reason)


async def set_timer(conn: Conn, run_id: uuid.UUID, kind: str, attempt: int, due: datetime) -> None:
    """Sets (or moves) one of the run's timers."""
    await conn.execute(sql.SET_TIMER, run_id, kind, attempt, due)


async def end_attempt(
    conn: Conn,
    run: Row,
    status: str,
    error: dict[str, Any] | None = None,
    retry_delay_ms: int | None = None,
) -> None:
    """Closes the current attempt of a run that goes on, adding its duration to
    the run's execution time."""
    await conn.execute(
        attempts_sql.END_ATTEMPT_ONLY, run["id"], run["attempt_count"], status, error, retry_delay_ms
    )


async def end_run(
    conn: Conn,
    run: Row,
    status: str,
    *,
    attempt_status: str | None = None,
    attempt_error: dict[str, Any] | None = None,
    output: bytes | None = None,
    encoding: str | None = None,
    error: dict[str, Any] | None = None,
    **details: Any,
) -> Outcome:
    """Moves a locked run to a terminal status in one statement (runs.END): ends
    its current attempt as attempt_status (unless None), clears its queue entry,
    timers and wait, records the event, and tells a waiting parent to look at
    its children."""
    assert status in TERMINAL_RUN_STATUSES
    ended = await conn.fetchrow(
        sql.END,
        run["id"],
        run["attempt_count"],
        attempt_status,
        attempt_error,
        None,
        status,
        output,
        encoding,
        error,
        {"error_type": (error or {}).get("type"), **details},
    )
    assert ended is not None
    effects = Effects(run_changed=True)
    if ended["parent_run_id"] is not None:
        effects.timer_due = ended["updated_at"]  # now() of this transaction: the parent's signal
    return Outcome(ended, effects)
