"""Durable waits: a suspended attempt leaves one wait on its run, at the
journal position after its last step; resolving the wait records the step at
that position and queues the run again, in one transaction, so the next
attempt replays to the wait and reads its result.

Every kind resolves to its step: a sleep to its wake-up time (json/plain, an
RFC 3339 string) when its timer fires, an event or a token to its payload,
children to a ChildResults message; a wait's timeout to a failed step
(cairn.WaitTimeout). Events and tokens arrive through deliver.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cairn import error_types, payloads
from cairn.statuses import RUN_STATUS_BY_NAME, TERMINAL_RUN_STATUSES
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import not_found, precondition
from services.history import convert
from services.history.api.transition import Conn, Effects, Outcome, Row, event, set_timer
from services.history.api.trigger import create_run
from services.history.sql import runs as runs_sql
from services.history.sql import steps as steps_sql
from services.history.sql import waits as sql


def rfc3339(at: datetime) -> str:
    """A sleep's output: its wake-up time in UTC to the millisecond, e.g. "2026-12-04T20:00:00.000Z"."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def check_position(conn: Conn, run: Row, position: int) -> None:
    """Refuses (FAILED_PRECONDITION, before anything is written) a suspension
    of a locked run whose wait would lose a result or leave a hole: its
    position is already recorded, or a position below it is not (a
    suspension ends the attempt, so none of its steps may still be running)."""
    stands = await conn.fetchrow(steps_sql.WAIT_POSITION, run["id"], position)
    assert stands is not None
    if stands["name"] is not None:
        raise precondition(
            f"wait.position {position} is already recorded (as {stands['name']!r} by attempt "
            f"{stands['attempt']}); a wait takes the next unrecorded position"
        )
    if stands["below"] < position:
        missing = await conn.fetchval(steps_sql.FIRST_GAP, run["id"])
        raise precondition(
            f"wait.position {position} leaves position {missing} unrecorded; a suspension ends the "
            "attempt, so every step below its wait must be recorded first"
        )


def _timeout_error(wait: Row) -> dict[str, Any]:
    what = {
        "event": f"event {wait['event_name']!r}"
        + (f" with key {wait['event_key']!r}" if wait["event_key"] else ""),
        "token": f"token {wait['token_id']}",
        "children": "child runs",
    }.get(wait["kind"], "wait")
    return {
        "type": error_types.WAIT_TIMEOUT,
        "message": f"timed out waiting for {what}",
        "stack_trace": "",
        "non_retryable": False,
    }


async def requeue(conn: Conn, run: Row, reason: str) -> Outcome:
    """WAITING (or DELAYED, RETRYING, or EXECUTING with its attempt released)
    -> QUEUED with its queue entry, in one statement (sql.runs.REQUEUE)."""
    queued = await conn.fetchrow(runs_sql.REQUEUE, run["id"], reason)
    assert queued is not None
    return Outcome(queued, Effects(run_changed=True, work_ready=True))


async def resolve(
    conn: Conn,
    run: Row,
    wait: Row,
    *,
    output: Any = None,
    data: bytes | None = None,
    encoding: str = payloads.JSON,
    error: dict[str, Any] | None = None,
) -> Outcome:
    """Records the wait's step (output as JSON value or raw payload bytes, or an
    error) and queues the run. The run must be locked and WAITING on `wait`."""
    if error is None and data is None:
        data = payloads.encode_json(output)
    await conn.execute(
        steps_sql.RECORD_WAIT_STEP,
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


async def suspend(conn: Conn, run: Row, spec: dict[str, Any]) -> Outcome:
    """Parks a locked run whose attempt just suspended on `spec`; resolves at once
    what is already there (a buffered event, a completed token)."""
    run_id, ns = run["id"], run["namespace"]
    kind = spec["kind"]
    timeout_at: datetime | None = spec.get("timeout_at")
    token: Row | None = None
    if kind == "token":
        token = await conn.fetchrow(sql.TOKEN_SHARED, spec["token_id"], ns)
        if token is None:
            raise not_found(f"wait token {spec['token_id']!r} not found in namespace {ns!r}")
        if token["timeout_at"] is not None:
            timeout_at = min(t for t in (timeout_at, token["timeout_at"]) if t is not None)
    wait = await conn.fetchrow(
        sql.INSERT_WAIT,
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
    assert wait is not None
    effects = Effects(run_changed=True)
    if kind == "children":
        for idx, new in enumerate(spec["children"]):
            new.parent_run_id = run_id
            new.idempotency_key = f"{run_id}:{spec['position']}:{idx}"
            child, _ = await create_run(conn, new, parent_known=True)
            if child.effects.work_ready:
                effects.work_keys.add((ns, new.task_id))
            effects.merge_timer(child.effects.timer_due)
            effects.created += child.effects.created
            await conn.execute(sql.ADD_CHILD_WAIT, run_id, spec["position"], idx, child.run["id"])
    waiting = await conn.fetchrow(sql.SET_WAITING, run_id, timeout_at)
    assert waiting is not None
    await event(
        conn,
        run_id,
        "suspended",
        waiting["attempt_count"],
        kind=kind,
        position=spec["position"],
        until=timeout_at.isoformat() if timeout_at else None,
    )
    if kind == "event":
        buffered = await conn.fetchrow(sql.TAKE_BUFFERED_EVENT, run_id, spec["event_name"], spec["event_key"])
        if buffered is not None:
            return await resolve(
                conn, waiting, wait, data=buffered["payload"], encoding=buffered["payload_encoding"]
            )
    if token is not None and token["status"] == "completed":
        return await resolve(conn, waiting, wait, data=token["payload"], encoding=token["payload_encoding"])
    if timeout_at is not None:
        await set_timer(conn, run_id, "wake", waiting["attempt_count"], timeout_at)
        effects.merge_timer(timeout_at)
    return Outcome(waiting, effects)


async def check(conn: Conn, run: Row, *, timed_out: bool) -> Outcome | None:
    """Resolves a locked WAITING run's wait if it can be: its timeout passed, its
    token was completed, or all its children finished. None when still waiting."""
    if run["status"] != "waiting":
        return None
    wait = await conn.fetchrow(sql.WAIT_OF_RUN, run["id"])
    if wait is None:
        return await requeue(conn, run, "wait missing")
    if wait["kind"] == "token":
        token = await conn.fetchrow(sql.TOKEN_BY_ID, wait["token_id"])
        if token is not None and token["status"] == "completed":
            return await resolve(conn, run, wait, data=token["payload"], encoding=token["payload_encoding"])
    if wait["kind"] == "children":
        children = await conn.fetch(sql.CHILD_RESULTS, run["id"], wait["position"])
        if all(c["status"] in TERMINAL_RUN_STATUSES for c in children):
            return await resolve(
                conn, run, wait, data=child_results(children), encoding=payloads.CHILD_RESULTS
            )
    if timed_out:
        if wait["kind"] == "sleep":
            return await resolve(conn, run, wait, output=rfc3339(wait["timeout_at"]))
        return await resolve(conn, run, wait, error=_timeout_error(wait))
    return None


def child_results(children: list[Row]) -> bytes:
    """A children wait's step output: each child's status, stored output
    Payload (unparsed) and error, in the wait's order, as ChildResults."""
    results = wpb.ChildResults()
    for c in children:
        result = results.results.add(run_id=str(c["id"]), status=RUN_STATUS_BY_NAME[c["status"]])
        output = convert.payload(c["output"], c["output_encoding"])
        if output is not None:
            result.output.CopyFrom(output)
        error = convert.error(c["error"])
        if error is not None:
            result.error.CopyFrom(error)
    return results.SerializeToString()
