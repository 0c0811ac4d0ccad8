"""Durable waits: a suspended attempt leaves one wait on its run; resolving the
wait records the step at the wait's position and queues the run again, in one
transaction, so the next attempt replays to the wait and reads its result.

A sleep's wake-up time is recorded by the worker itself (a step), so its wait
only needs the timer; events, tokens and children are resolved here."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from cairn import payloads
from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import not_found, precondition
from services.history.runs import Effects, Outcome, create_run, enqueue, event, set_timer

TIMEOUT_ERROR = "cairn.WaitTimeout"


def _timeout_error(wait: asyncpg.Record) -> dict[str, Any]:
    what = {
        "event": f"event {wait['event_name']!r}"
        + (f" with key {wait['event_key']!r}" if wait["event_key"] else ""),
        "token": f"token {wait['token_id']}",
        "children": "child runs",
    }.get(wait["kind"], "wait")
    return {
        "type": TIMEOUT_ERROR,
        "message": f"timed out waiting for {what}",
        "stack_trace": "",
        "non_retryable": False,
    }


async def requeue(conn: asyncpg.Connection, run: asyncpg.Record, reason: str) -> Outcome:
    """WAITING (or DELAYED, RETRYING) → QUEUED with its queue entry."""
    await conn.execute("DELETE FROM waits WHERE run_id = $1", run["id"])
    await conn.execute(
        "DELETE FROM timers WHERE run_id = $1 AND kind IN ('wake', 'signal', 'delay', 'retry')", run["id"]
    )
    await enqueue(conn, run)
    run = await conn.fetchrow(
        "UPDATE runs SET status = 'queued', updated_at = now(), next_attempt_at = NULL "
        "WHERE id = $1 RETURNING *",
        run["id"],
    )
    await event(conn, run["id"], "requeued", run["attempt_count"], reason=reason)
    return Outcome(run, Effects(run_changed=True, work_ready=True))


async def resolve(
    conn: asyncpg.Connection,
    run: asyncpg.Record,
    wait: asyncpg.Record,
    *,
    output: Any = None,
    data: bytes | None = None,
    encoding: str = payloads.JSON,
    error: dict[str, Any] | None = None,
) -> Outcome:
    """Records the wait's step (output as JSON value or raw payload bytes, or an
    error) and queues the run. The run must be locked and WAITING on `wait`."""
    if wait["kind"] != "sleep":
        if error is None and data is None:
            data = payloads.encode_json(output)
        await conn.execute(
            "INSERT INTO steps (run_id, position, name, status, output, output_encoding, error, attempt, tries) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) ON CONFLICT (run_id, position) DO NOTHING",
            run["id"],
            wait["position"],
            wait["name"],
            "failed" if error else "completed",
            None if error else data,
            None if error else encoding,
            error,
            run["attempt_count"],
        )
    await event(
        conn,
        run["id"],
        "wait_resolved",
        run["attempt_count"],
        kind=wait["kind"],
        position=wait["position"],
        error_type=(error or {}).get("type"),
    )
    return await requeue(conn, run, f"{wait['kind']} wait resolved")


async def suspend(conn: asyncpg.Connection, run: asyncpg.Record, spec: dict[str, Any]) -> Outcome:
    """Parks a locked run whose attempt just suspended on `spec`; resolves at once
    what is already there (a buffered event, a completed token)."""
    run_id, ns = run["id"], run["namespace"]
    kind = spec["kind"]
    timeout_at: datetime | None = spec.get("timeout_at")
    if kind == "token":
        token = await conn.fetchrow(
            "SELECT * FROM wait_tokens WHERE id = $1 AND namespace = $2 FOR SHARE", spec["token_id"], ns
        )
        if token is None:
            raise not_found(f"wait token {spec['token_id']!r} not found in namespace {ns!r}")
        if token["timeout_at"] is not None:
            timeout_at = min(t for t in (timeout_at, token["timeout_at"]) if t is not None)
    wait = await conn.fetchrow(
        "INSERT INTO waits (run_id, namespace, kind, position, name, event_name, event_key, token_id, "
        "timeout_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        run_id,
        ns,
        kind,
        spec["position"],
        spec["name"],
        spec.get("event_name"),
        spec.get("event_key"),
        spec.get("token_id"),
        timeout_at,
    )
    effects = Effects(run_changed=True)
    if kind == "children":
        for idx, new in enumerate(spec["children"]):
            new.parent_run_id = run_id
            new.idempotency_key = f"{run_id}:{spec['position']}:{idx}"
            child, _ = await create_run(conn, new)
            if child.effects.work_ready:
                effects.work_keys.add((ns, new.task_id))
            effects.merge_timer(child.effects.timer_due)
            await conn.execute(
                "INSERT INTO child_waits (parent_run_id, position, idx, child_run_id) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                run_id,
                spec["position"],
                idx,
                child.run["id"],
            )
    run = await conn.fetchrow(
        "UPDATE runs SET status = 'waiting', updated_at = now(), next_attempt_at = $2 "
        "WHERE id = $1 RETURNING *",
        run_id,
        timeout_at,
    )
    await event(
        conn,
        run_id,
        "suspended",
        run["attempt_count"],
        kind=kind,
        position=spec["position"],
        until=timeout_at.isoformat() if timeout_at else None,
    )
    if kind == "event":
        buffered = await conn.fetchrow(
            "DELETE FROM run_inbox WHERE id = (SELECT id FROM run_inbox WHERE run_id = $1 AND name = $2 "
            "AND key = $3 ORDER BY id LIMIT 1) RETURNING payload, payload_encoding",
            run_id,
            spec["event_name"],
            spec["event_key"],
        )
        if buffered is not None:
            return await resolve(
                conn, run, wait, data=buffered["payload"], encoding=buffered["payload_encoding"]
            )
    if kind == "token" and token["status"] == "completed":
        return await resolve(conn, run, wait, data=token["payload"], encoding=token["payload_encoding"])
    if timeout_at is not None:
        await set_timer(conn, run_id, "wake", run["attempt_count"], timeout_at)
        effects.merge_timer(timeout_at)
    return Outcome(run, effects)


async def check(conn: asyncpg.Connection, run: asyncpg.Record, *, timed_out: bool) -> Outcome | None:
    """Resolves a locked WAITING run's wait if it can be: its timeout passed, its
    token was completed, or all its children finished. None when still waiting."""
    if run["status"] != "waiting":
        return None
    wait = await conn.fetchrow("SELECT * FROM waits WHERE run_id = $1", run["id"])
    if wait is None:
        return await requeue(conn, run, "wait missing")
    if wait["kind"] == "token":
        token = await conn.fetchrow("SELECT * FROM wait_tokens WHERE id = $1", wait["token_id"])
        if token is not None and token["status"] == "completed":
            return await resolve(conn, run, wait, data=token["payload"], encoding=token["payload_encoding"])
    if wait["kind"] == "children":
        children = await conn.fetch(
            "SELECT r.id, r.status, r.output, r.output_encoding, r.error FROM child_waits c "
            "JOIN runs r ON r.id = c.child_run_id WHERE c.parent_run_id = $1 AND c.position = $2 "
            "ORDER BY c.idx",
            run["id"],
            wait["position"],
        )
        if all(c["status"] in TERMINAL_RUN_STATUSES for c in children):
            return await resolve(conn, run, wait, output=[_child_result(c) for c in children])
    if timed_out:
        if wait["kind"] == "sleep":
            return await resolve(conn, run, wait)
        return await resolve(conn, run, wait, error=_timeout_error(wait))
    return None


def _child_result(c: asyncpg.Record) -> dict[str, Any]:
    output = None
    if c["output"]:
        try:
            output = json.loads(c["output"])
        except ValueError:
            output = None
    error = c["error"]
    return {
        "run_id": str(c["id"]),
        "status": c["status"],
        "output": output,
        "error": {"type": error.get("type", ""), "message": error.get("message", "")} if error else None,
    }


async def send_event(
    conn: asyncpg.Connection, run: asyncpg.Record, name: str, key: str, data: bytes, encoding: str
) -> Outcome | None:
    """Delivers an event to one locked run: resolves its matching wait, or keeps
    the event in the run's inbox until it waits for it (None then)."""
    if run["status"] in TERMINAL_RUN_STATUSES:
        raise precondition(f"run {run['id']} already finished as {run['status']}; it waits for no event")
    if run["status"] == "waiting":
        wait = await conn.fetchrow(
            "SELECT * FROM waits WHERE run_id = $1 AND kind = 'event' AND event_name = $2 AND event_key = $3",
            run["id"],
            name,
            key,
        )
        if wait is not None:
            return await resolve(conn, run, wait, data=data, encoding=encoding)
    await conn.execute(
        "INSERT INTO run_inbox (run_id, name, key, payload, payload_encoding) VALUES ($1, $2, $3, $4, $5)",
        run["id"],
        name,
        key,
        data,
        encoding,
    )
    return None


async def create_token(
    conn: asyncpg.Connection,
    namespace: str,
    run_id: uuid.UUID | None,
    timeout: float | None,
    idempotency_key: str | None,
) -> asyncpg.Record:
    token = await conn.fetchrow(
        "INSERT INTO wait_tokens (id, namespace, run_id, status, idempotency_key, timeout_at) "
        "VALUES ($1, $2, $3, 'pending', $4, CASE WHEN $5::float8 IS NULL THEN NULL "
        "ELSE now() + make_interval(secs => $5) END) "
        "ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *",
        f"tok_{uuid.uuid4().hex}",
        namespace,
        run_id,
        idempotency_key,
        timeout,
    )
    if token is None:
        token = await conn.fetchrow(
            "SELECT * FROM wait_tokens WHERE namespace = $1 AND idempotency_key = $2",
            namespace,
            idempotency_key,
        )
    return token


async def complete_token(
    conn: asyncpg.Connection, namespace: str, token_id: str, data: bytes, encoding: str
) -> tuple[asyncpg.Record, Effects]:
    """Completes a pending token once; signals the run waiting on it (through its
    timer row, so this transaction never locks a run after a token)."""
    token = await conn.fetchrow(
        "SELECT *, timeout_at < now() AS expired FROM wait_tokens "
        "WHERE id = $1 AND namespace = $2 FOR UPDATE",
        token_id,
        namespace,
    )
    if token is None:
        raise not_found(f"wait token {token_id!r} not found in namespace {namespace!r}")
    if token["status"] == "completed":
        raise precondition(
            f"wait token {token_id} was already completed at {token['completed_at'].isoformat()}"
        )
    if token["expired"]:
        raise precondition(f"wait token {token_id} timed out at {token['timeout_at'].isoformat()}")
    token = await conn.fetchrow(
        "UPDATE wait_tokens SET status = 'completed', payload = $2, payload_encoding = $3, "
        "completed_at = now() WHERE id = $1 RETURNING *",
        token_id,
        data,
        encoding,
    )
    effects = Effects()
    waiting = await conn.fetch("SELECT run_id FROM waits WHERE kind = 'token' AND token_id = $1", token_id)
    due = token["completed_at"]  # now() of this transaction
    for w in waiting:
        await set_timer(conn, w["run_id"], "signal", 0, due)
        effects.merge_timer(due)
    return token, effects
