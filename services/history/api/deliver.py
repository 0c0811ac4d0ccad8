"""Delivering to waits from outside a run: events (to one run, or to every run
waiting on a name and key) and wait tokens (created, completed, read)."""

from __future__ import annotations

import uuid

import asyncpg

from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import not_found, precondition
from services.history.api.transition import Conn, Effects, Outcome, Row, lock_run, set_timer
from services.history.api.wait import resolve
from services.history.sql import runs as runs_sql
from services.history.sql import waits as sql


async def send_event(conn: Conn, run: Row, name: str, key: str, data: bytes, encoding: str) -> Outcome | None:
    """Delivers an event to one locked run: resolves its matching wait, or keeps
    the event in the run's inbox until it waits for it (None then)."""
    if run["status"] in TERMINAL_RUN_STATUSES:
        raise precondition(f"run {run['id']} already finished as {run['status']}; it waits for no event")
    if run["status"] == "waiting":
        wait = await conn.fetchrow(sql.EVENT_WAIT_OF_RUN, run["id"], name, key)
        if wait is not None:
            return await resolve(conn, run, wait, data=data, encoding=encoding)
    await conn.execute(sql.BUFFER_EVENT, run["id"], name, key, data, encoding)
    return None


async def send_event_to_run(
    pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID, name: str, key: str, data: bytes, encoding: str
) -> Outcome | None:
    """An event for one run: resolves its wait, or is kept (None) until it waits."""
    async with pool.acquire() as conn, conn.transaction():
        run = await lock_run(conn, namespace, run_id)
        return await send_event(conn, run, name, key, data, encoding)


async def send_event_by_name(
    pool: asyncpg.Pool, namespace: str, name: str, key: str, data: bytes, encoding: str
) -> list[Outcome]:
    """An event for every run waiting on (name, key) now; each resolved in its own transaction."""
    async with pool.acquire() as conn:
        waiting = await conn.fetch(sql.RUNS_WAITING_FOR_EVENT, namespace, name, key)
    delivered = []
    for w in waiting:
        async with pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow(runs_sql.LOCK_RUN_BY_ID, w["run_id"])
            wait = await conn.fetchrow(sql.EVENT_WAIT_OF_RUN, w["run_id"], name, key)
            if run is not None and run["status"] == "waiting" and wait is not None:
                delivered.append(await resolve(conn, run, wait, data=data, encoding=encoding))
    return delivered


async def create_token(
    pool: asyncpg.Pool,
    namespace: str,
    run_id: uuid.UUID | None,
    timeout: float | None,
    idempotency_key: str | None,
) -> Row:
    """A pending wait token (the existing one for a used idempotency key)."""
    async with pool.acquire() as conn, conn.transaction():
        if run_id is not None:
            await lock_run(conn, namespace, run_id, shared=True)
        token = await conn.fetchrow(
            sql.CREATE_TOKEN, f"tok_{uuid.uuid4().hex}", namespace, run_id, idempotency_key, timeout
        )
        if token is None:
            token = await conn.fetchrow(sql.TOKEN_BY_IDEMPOTENCY_KEY, namespace, idempotency_key)
        assert token is not None
        return token


async def complete_token(
    pool: asyncpg.Pool, namespace: str, token_id: str, data: bytes, encoding: str
) -> tuple[Row, Effects]:
    """Completes a pending token once; signals the run waiting on it (through its
    timer row, so this transaction never locks a run after a token)."""
    async with pool.acquire() as conn, conn.transaction():
        token = await conn.fetchrow(sql.LOCK_TOKEN, token_id, namespace)
        if token is None:
            raise not_found(f"wait token {token_id!r} not found in namespace {namespace!r}")
        if token["status"] == "completed":
            raise precondition(
                f"wait token {token_id} was already completed at {token['completed_at'].isoformat()}"
            )
        if token["expired"]:
            raise precondition(f"wait token {token_id} timed out at {token['timeout_at'].isoformat()}")
        completed = await conn.fetchrow(sql.COMPLETE_TOKEN, token_id, data, encoding)
        assert completed is not None
        effects = Effects()
        due = completed["completed_at"]  # now() of this transaction
        for w in await conn.fetch(sql.RUNS_WAITING_ON_TOKEN, token_id):
            await set_timer(conn, w["run_id"], "signal", 0, due)
            effects.merge_timer(due)
        return completed, effects


async def get_token(pool: asyncpg.Pool, namespace: str, token_id: str) -> Row:
    """A wait token; NOT_FOUND outside its namespace."""
    async with pool.acquire() as conn:
        token = await conn.fetchrow(sql.TOKEN, token_id, namespace)
    if token is None:
        raise not_found(f"wait token {token_id!r} not found in namespace {namespace!r}")
    return token
