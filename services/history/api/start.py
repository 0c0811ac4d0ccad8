"""Starting the next attempt of a claimed run (claim.py claims it). A queue
without limits takes one statement (sql.attempts.START); a limited or paused
queue takes its slot here under the queue's advisory lock and then writes the
attempt with the same statement. Each attempt gets its token here: the secret
its assignment carries and every write of the attempt must present."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from services.history.api.transition import Conn, Effects, Outcome, Row, set_timer
from services.history.sql import attempts as sql
from services.history.sql import runs as runs_sql
from services.history.sql import steps as steps_sql

DISPATCH_PRUNE_MARGIN = timedelta(minutes=1)
ATTEMPT_TOKEN_BYTES = 24  # 192 random bits: 32 URL-safe characters
Started = tuple[Outcome, list[Row] | None]


async def start_attempt(
    conn: Conn,
    lease_seconds: float,
    namespace: str,
    run_id: uuid.UUID,
    claim_token: uuid.UUID,
    worker_id: str,
    worker_version: str,
) -> Started | None:
    """Starts the next attempt of a claimed run, with its lease (and its
    max-duration deadline): (outcome, journal). None when the claim is stale;
    (outcome, None) when the run must wait for its rate limit (announce it).
    The run row of a started attempt has its token as attempt_token."""
    started = await _start(conn, lease_seconds, run_id, namespace, claim_token, worker_id, worker_version)
    if started is not None:
        return started
    return await _start_limited(
        conn, lease_seconds, namespace, run_id, claim_token, worker_id, worker_version
    )


async def _start(
    conn: Conn,
    lease_seconds: float,
    run_id: uuid.UUID,
    namespace: str,
    claim_token: uuid.UUID,
    worker_id: str,
    worker_version: str,
    *,
    slot_taken: bool = False,
) -> tuple[Outcome, list[Row]] | None:
    """The START statement, with the outcome and the journal; None when it wrote nothing."""
    run = await conn.fetchrow(
        sql.START,
        run_id,
        namespace,
        claim_token,
        worker_id,
        worker_version,
        lease_seconds,
        slot_taken,
        new_attempt_token(),
    )
    if run is None:
        return None
    effects = Effects(run_changed=True)
    if run["max_duration_ms"] is not None:
        effects.merge_timer(
            run["updated_at"] + timedelta(milliseconds=max(0, run["max_duration_ms"] - run["exec_ms"]))
        )
    steps = [] if run["attempt_count"] == 1 else await conn.fetch(steps_sql.JOURNAL, run_id)
    return Outcome(run, effects), steps


def new_attempt_token() -> str:
    """An attempt's token: from the operating system's CSPRNG (secrets), made
    here rather than by PostgreSQL so it needs no extension or server version
    and carries more randomness than gen_random_uuid's 122 bits."""
    return secrets.token_urlsafe(ATTEMPT_TOKEN_BYTES)


async def _start_limited(
    conn: Conn,
    lease_seconds: float,
    namespace: str,
    run_id: uuid.UUID,
    claim_token: uuid.UUID,
    worker_id: str,
    worker_version: str,
) -> Started | None:
    """A start the START statement did not make: a stale claim, or a queue
    with limits or paused, whose slot is taken here under the queue's lock."""
    async with conn.transaction():
        run = await conn.fetchrow(runs_sql.LOCK_RUN, run_id, namespace)
        if run is None or run["status"] != "queued":
            await conn.execute(
                sql.DROP_QUEUE_ENTRY, run_id
            )  # a stale entry must not be claimed again and again
            return None
        if not await conn.fetchval(sql.HOLDS_CLAIM, run_id, claim_token):
            return None  # the claim expired and another poller has it
        not_before = await take_slot(conn, run)
        if not_before is None:
            return await _start(
                conn,
                lease_seconds,
                run_id,
                namespace,
                claim_token,
                worker_id,
                worker_version,
                slot_taken=True,
            )
        # No slot (or paused, or rate-limited): hand the claim back. A
        # rate-limited entry waits until its window has room, and a timer
        # announces it then, so pollers need not wait for a sweep.
        later = await conn.fetchval(sql.RETURN_CLAIM, run_id, not_before)
        if later:
            await set_timer(conn, run_id, "ready", 0, not_before)
            return Outcome(run, Effects(timer_due=not_before)), None
        return None


async def take_slot(conn: Conn, run: Row) -> datetime | None:
    """None when the run may start now; otherwise the earliest time to try
    again. Counting executing runs (per concurrency key) and recent starts
    under the queue's advisory lock (the key triggers take for max_depth), in
    the starting transaction, keeps the limits exact across replicas; a slot
    frees when its attempt ends, so none leaks."""
    ns, queue, key = run["namespace"], run["queue"], run["concurrency_key"]
    q = await conn.fetchrow(sql.QUEUE_SETTINGS, ns, queue)
    if q is None:
        return None
    now: datetime = q["now"]
    if q["paused"]:
        return now
    if q["concurrency_limit"] or q["rate_limit"]:
        await conn.execute(runs_sql.LOCK_QUEUE, ns, queue)
        if q["concurrency_limit"]:
            running = await conn.fetchval(sql.RUNNING_IN_GROUP, ns, queue, key)
            if running >= q["concurrency_limit"]:
                return now
        if q["rate_limit"]:
            period = timedelta(milliseconds=q["rate_period_ms"])
            # Prune with a margin: a transaction that began earlier but takes the
            # lock later still needs the rows of its own, earlier window.
            await conn.execute(sql.PRUNE_DISPATCHES, ns, queue, key, now - period - DISPATCH_PRUNE_MARGIN)
            recent = await conn.fetch(sql.RECENT_DISPATCHES, ns, queue, key, now - period)
            if len(recent) >= q["rate_limit"]:
                at: datetime = recent[len(recent) - q["rate_limit"]]["at"]
                return at + period
            await conn.execute(sql.RECORD_DISPATCH, ns, queue, key, now)
    return None
