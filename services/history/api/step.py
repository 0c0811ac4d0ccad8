"""What a running attempt writes besides its end: step records, heartbeats
and metadata. A step record is one statement (sql.steps.RECORD_STEP); a
refused one takes the transaction that explains the refusal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import grpc

from cairn.limits import MAX_STEPS_IN_FLIGHT
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import ServiceError, already_exists, attempt_gone, not_found, precondition
from services.history.api.transition import Conn, Row, event, fence, lock_attempt
from services.history.sql import attempts as attempts_sql
from services.history.sql import runs as runs_sql
from services.history.sql import steps as sql


async def record_step(
    conn: Conn,
    lease_seconds: float,
    namespace: str,
    run_id: uuid.UUID,
    attempt: int,
    position: int,
    name: str,
    status: str,
    output: bytes | None,
    encoding: str | None,
    error: dict[str, Any] | None,
    tries: int,
    try_errors: list[dict[str, Any]] | None,
    token: str,
) -> Row:
    """Appends one step to the journal, once per position, from the current
    attempt only (with its token), at most MAX_STEPS_IN_FLIGHT above the highest recorded
    position, with its event, and extends the attempt's lease: one statement,
    so one round trip and one commit on the hot path. A refused write takes
    the slower path that explains the refusal. The caller checked the
    request's shape (requests.check_step)."""
    step = await conn.fetchrow(
        sql.RECORD_STEP,
        run_id,
        namespace,
        attempt,
        position,
        name,
        status,
        output,
        encoding,
        error,
        tries,
        lease_seconds,
        try_errors,
        token,
    )
    if step is not None:
        return step
    async with conn.transaction():
        await lock_attempt(conn, namespace, run_id, attempt, token, shared=True)
        existing = await conn.fetchrow(sql.STEP_AT, run_id, position)
        if existing is None:
            highest: int | None = await conn.fetchval(sql.HIGHEST_POSITION, run_id)
            bound = (-1 if highest is None else highest) + MAX_STEPS_IN_FLIGHT
            if position > bound:
                recorded = "nothing is recorded" if highest is None else f"the highest recorded is {highest}"
                raise precondition(
                    f"position {position} of run {run_id} is too far ahead of the journal: {recorded}, "
                    f"and a step may be recorded at most {MAX_STEPS_IN_FLIGHT} positions above it "
                    f"(steps started together, still running)"
                )
            # RECORD_STEP writes whenever the fence passes, the position is free and within the bound
            raise ServiceError(
                grpc.StatusCode.INTERNAL,
                f"step position {position} of run {run_id} was neither recorded nor refused",
            )
        if existing["attempt"] == attempt and existing["name"] == name:
            # The same write again (its answer was lost): idempotent, and a checkpoint like the first.
            await conn.execute(attempts_sql.EXTEND_LEASE, run_id, attempt, lease_seconds, namespace, token)
            return existing
        raise already_exists(
            f"step position {position} of run {run_id} is already recorded "
            f"(as {existing['name']!r} by attempt {existing['attempt']})"
        )


async def heartbeat(
    pool: asyncpg.Pool, lease_seconds: float, namespace: str, run_id: uuid.UUID, attempt: int, token: str
) -> datetime:
    """Extends the lease of the current attempt, given its token (one
    statement); refuses any other attempt or token."""
    async with pool.acquire() as conn:
        due: datetime | None = await conn.fetchval(
            attempts_sql.EXTEND_LEASE, run_id, attempt, lease_seconds, namespace, token
        )
        if due is None:
            run = await conn.fetchrow(attempts_sql.FENCE_RUN, run_id, namespace)
            if run is None:
                raise not_found(f"run {run_id} not found in namespace {namespace!r}")
            await fence(conn, run, attempt, token)
            # Current and executing, but its lease timer is being fired: it expired.
            raise attempt_gone(
                f"attempt {attempt} of run {run_id} has no lease (it expired); abandon it",
                wpb.ATTEMPT_GONE_SUPERSEDED,
            )
    return due


async def update_metadata(
    pool: asyncpg.Pool,
    namespace: str,
    run_id: uuid.UUID,
    attempt: int,
    token: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Replaces the run's metadata, from its current attempt only (with its token)."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_attempt(conn, namespace, run_id, attempt, token)
        await conn.execute(runs_sql.SET_METADATA, run_id, metadata)
        await event(conn, run_id, "metadata_updated", attempt)
    return metadata
