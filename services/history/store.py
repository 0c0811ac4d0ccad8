"""Run state transitions. Each public method is one transaction that writes the
new state, its event, and any queue entry or timer together, so a crash at any
moment leaves either all of it or none; the usual cases are one statement
(hot_path.py). Every transaction locks the run row first (then queue entry,
wait, timer); a transaction that starts from a token or a child touches only
the other run's timer row, never the run, so transitions never deadlock.
group_commit puts the transitions of several runs in one transaction: should
two such batches deadlock, PostgreSQL aborts one and its writes are applied
one by one.

Fencing: a write from a worker names (run, attempt) and is applied only while
that attempt is the run's current, executing one."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import grpc

from cairn import backoff, retry_policy
from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import ServiceError, already_exists, not_found, precondition
from services.history import hot_path, waits
from services.history.runs import (
    Effects,
    NewRun,
    Outcome,
    create_run,
    end_run,
    event,
    fence,
    lock_run,
    set_timer,
)

log = logging.getLogger("cairn.history.store")
T = TypeVar("T")
DISPATCH_PRUNE_MARGIN = timedelta(minutes=1)


class RunStore:
    """History's transactions on runs, attempts, steps, events, waits and timers."""

    def __init__(self, pool: asyncpg.Pool, lease_seconds: float) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds

    @contextlib.asynccontextmanager
    async def _using(self, conn: asyncpg.Connection | None) -> AsyncIterator[asyncpg.Connection]:
        """The given connection (a caller's transaction), or one from the pool."""
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as acquired:
                yield acquired

    async def group_commit(
        self, writes: list[Callable[[asyncpg.Connection], Awaitable[T]]]
    ) -> list[T | ServiceError]:
        """Applies writes of different attempts in one transaction, so they share
        one commit; each gets its own result or refusal, as if applied alone (a
        refusal rolls back to a savepoint that the write's own transaction
        becomes). A database error, e.g. a deadlock between two batches, rolls the
        batch back and applies each write alone. A single write is applied
        alone at once: its own statement is its transaction."""
        if len(writes) > 1:
            async with self.pool.acquire() as conn:
                try:
                    results: list[T | ServiceError] = []
                    async with conn.transaction():
                        for write in writes:
                            try:
                                results.append(await write(conn))
                            except ServiceError as exc:
                                results.append(exc)
                    return results
                except asyncpg.PostgresError as exc:
                    log.warning(
                        "group commit of %d writes rolled back (%s); applying each alone", len(writes), exc
                    )
        results = []
        for write in writes:
            try:
                async with self.pool.acquire() as conn:
                    results.append(await write(conn))
            except ServiceError as exc:
                results.append(exc)
            except asyncpg.PostgresError as exc:  # this write's own failure, not the others'
                log.exception("a write of a group commit failed")
                results.append(
                    ServiceError(
                        grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see history's log"
                    )
                )
        return results

    # ---- triggering and reading -------------------------------------------------

    async def trigger(self, new: NewRun, conn: asyncpg.Connection | None = None) -> tuple[Outcome, bool]:
        """Creates a run (or finds it by idempotency key: then True). The usual
        run is one statement; options with timers or limits take a transaction."""
        async with self._using(conn) as conn:
            opts = new.options
            if not (opts.delay > 0 or opts.ttl or opts.concurrency_key):
                run = await conn.fetchrow(
                    hot_path.TRIGGER,
                    uuid.uuid4(),
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
                )
                if run is not None:
                    return Outcome(run, Effects(run_changed=True, work_ready=True)), False
            async with conn.transaction():
                outcome, created = await create_run(conn, new)
        return outcome, not created

    async def trigger_batch(self, items: list[NewRun]) -> list[tuple[Outcome, bool]]:
        """Creates many runs in one transaction: all or none."""
        async with self.pool.acquire() as conn, conn.transaction():
            results = []
            for i, new in enumerate(items):
                try:
                    outcome, created = await create_run(conn, new)
                except ServiceError as exc:
                    raise ServiceError(exc.code, f"runs[{i}].task_id: {exc.message}") from None
                results.append((outcome, not created))
        return results

    async def get(self, namespace: str, run_id: uuid.UUID) -> dict[str, Any]:
        """A run with its attempts, steps, events, children and wait."""
        async with self.pool.acquire() as conn:
            run = await conn.fetchrow(
                "SELECT * FROM runs WHERE id = $1 AND namespace = $2", run_id, namespace
            )
            if run is None:
                raise not_found(f"run {run_id} not found in namespace {namespace!r}")
            return {
                "run": run,
                "attempts": await conn.fetch(
                    "SELECT * FROM attempts WHERE run_id = $1 ORDER BY number", run_id
                ),
                "steps": await conn.fetch("SELECT * FROM steps WHERE run_id = $1 ORDER BY position", run_id),
                "events": await conn.fetch("SELECT * FROM run_events WHERE run_id = $1 ORDER BY id", run_id),
                "children": [
                    r["id"]
                    for r in await conn.fetch(
                        "SELECT r.id FROM runs r LEFT JOIN child_waits c ON c.parent_run_id = r.parent_run_id "
                        "AND c.child_run_id = r.id WHERE r.parent_run_id = $1 "
                        "ORDER BY r.created_at, c.position, c.idx, r.id",
                        run_id,
                    )
                ],
                "wait": await conn.fetchrow("SELECT * FROM waits WHERE run_id = $1", run_id),
                "wait_children": [
                    r["child_run_id"]
                    for r in await conn.fetch(
                        "SELECT c.child_run_id FROM child_waits c JOIN waits w ON w.run_id = c.parent_run_id "
                        "AND w.position = c.position WHERE c.parent_run_id = $1 ORDER BY c.idx",
                        run_id,
                    )
                ],
            }

    async def list_runs(
        self,
        namespace: str,
        task_id: str,
        statuses: list[str],
        tag: str,
        parent_run_id: uuid.UUID | None,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[asyncpg.Record]:
        """Runs newest first, `limit` of them, after the (created_at, id) cursor."""
        clauses, args = ["namespace = $1"], [namespace]

        def where(sql: str, *values: Any) -> None:
            args.extend(values)
            clauses.append(sql.format(*[f"${len(args) - len(values) + i + 1}" for i in range(len(values))]))

        if task_id:
            where("task_id = {}", task_id)
        if statuses:
            where("status = ANY({})", statuses)
        if tag:
            where("tags @> ARRAY[{}]::text[]", tag)
        if parent_run_id is not None:
            where("parent_run_id = {}", parent_run_id)
        if after is not None:
            where("(created_at, id) < ({}, {})", *after)
        args.append(limit)
        sql = (
            f"SELECT * FROM runs WHERE {' AND '.join(clauses)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
        )
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    # ---- cancel ------------------------------------------------------------------

    async def cancel(self, namespace: str, run_id: uuid.UUID, reason: str) -> Outcome:
        """Ends an unfinished run as canceled; an executing attempt is fenced off
        so its next checkpoint or heartbeat is refused. The caller then cancels
        the children listed in extra["children"], each in its own transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await lock_run(conn, namespace, run_id)
            if run["status"] in TERMINAL_RUN_STATUSES:
                raise precondition(
                    f"run {run_id} already finished as {run['status']}; only unfinished runs can be canceled"
                )
            if run["status"] == "executing":
                await self._end_attempt(conn, run, "canceled")
            outcome = await end_run(
                conn,
                run,
                "canceled",
                reason=reason,
                error={
                    "type": "Canceled",
                    "message": reason or "canceled by request",
                    "stack_trace": "",
                    "non_retryable": True,
                },
            )
            outcome.extra["children"] = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM runs WHERE parent_run_id = $1 AND status <> ALL($2::text[])",
                    run_id,
                    list(TERMINAL_RUN_STATUSES),
                )
            ]
        return outcome

    # ---- attempts ----------------------------------------------------------------

    async def start_attempt(
        self,
        namespace: str,
        run_id: uuid.UUID,
        claim_token: uuid.UUID,
        worker_id: str,
        worker_version: str,
        conn: asyncpg.Connection | None = None,
    ) -> tuple[Outcome, list[asyncpg.Record] | None] | None:
        """Starts the next attempt of a claimed run, with its lease (and its
        max-duration deadline): (outcome, journal). None when the claim is stale;
        (outcome, None) when the run must wait for its rate limit (announce it).
        A queue without limits takes one statement; the transaction below
        handles limits and explains refusals."""
        async with self._using(conn) as conn:
            started = await self._start(
                conn, run_id, namespace, claim_token, worker_id, worker_version, slot_taken=False
            )
            if started is not None:
                return started
            return await self._start_attempt(conn, namespace, run_id, claim_token, worker_id, worker_version)

    async def _start(
        self,
        conn: asyncpg.Connection,
        run_id: uuid.UUID,
        namespace: str,
        claim_token: uuid.UUID,
        worker_id: str,
        worker_version: str,
        *,
        slot_taken: bool,
    ) -> tuple[Outcome, list[asyncpg.Record]] | None:
        """The START statement, with the outcome and the journal; None when it wrote nothing."""
        run = await conn.fetchrow(
            hot_path.START,
            run_id,
            namespace,
            claim_token,
            worker_id,
            worker_version,
            self.lease_seconds,
            slot_taken,
        )
        if run is None:
            return None
        effects = Effects(run_changed=True)
        if run["max_duration_ms"] is not None:
            effects.merge_timer(
                run["updated_at"] + timedelta(milliseconds=max(0, run["max_duration_ms"] - run["exec_ms"]))
            )
        steps = (
            []
            if run["attempt_count"] == 1
            else await conn.fetch("SELECT * FROM steps WHERE run_id = $1 ORDER BY position", run_id)
        )
        return Outcome(run, effects), steps

    async def _start_attempt(
        self,
        conn: asyncpg.Connection,
        namespace: str,
        run_id: uuid.UUID,
        claim_token: uuid.UUID,
        worker_id: str,
        worker_version: str,
    ) -> tuple[Outcome, list[asyncpg.Record] | None] | None:
        """A start the START statement did not make: a stale claim, or a queue
        with limits or paused, whose slot is taken here under the queue's lock."""
        async with conn.transaction():
            run = await conn.fetchrow(
                "SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR UPDATE", run_id, namespace
            )
            if run is None or run["status"] != "queued":
                # A stale entry must not be claimed again and again.
                await conn.execute("DELETE FROM queue_entries WHERE run_id = $1", run_id)
                return None
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM queue_entries WHERE run_id = $1 AND claim_token = $2)",
                run_id,
                claim_token,
            ):
                return None  # the claim expired and another poller has it
            not_before = await self._take_slot(conn, run)
            if not_before is None:
                return await self._start(
                    conn, run_id, namespace, claim_token, worker_id, worker_version, slot_taken=True
                )
            # No slot (or paused, or rate-limited): hand the claim back. A
            # rate-limited entry waits until its window has room, and a timer
            # announces it then, so pollers need not wait for a sweep.
            later = await conn.fetchval(
                "UPDATE queue_entries SET claim_token = NULL, claimed_until = NULL, "
                "available_at = greatest(available_at, $2) WHERE run_id = $1 "
                "RETURNING $2::timestamptz > now()",
                run_id,
                not_before,
            )
            if later:
                await set_timer(conn, run_id, "ready", 0, not_before)
                return Outcome(run, Effects(timer_due=not_before)), None
            return None

    async def _take_slot(self, conn: asyncpg.Connection, run: asyncpg.Record) -> datetime | None:
        """None when the run may start now; otherwise the earliest time to try
        again. Counting executing runs (per concurrency key) and recent starts
        under the queue row's lock, in the starting transaction, keeps the limits
        exact across replicas; a slot frees when its attempt ends, so none leaks."""
        ns, queue, key = run["namespace"], run["queue"], run["concurrency_key"]
        q = await conn.fetchrow(
            "SELECT *, now() AS now FROM queues WHERE namespace = $1 AND name = $2", ns, queue
        )
        if q is None:
            return None
        now = q["now"]
        if q["paused"]:
            return now
        if q["concurrency_limit"] or q["rate_limit"]:
            q = await conn.fetchrow(
                "SELECT * FROM queues WHERE namespace = $1 AND name = $2 FOR UPDATE", ns, queue
            )
            if q["concurrency_limit"]:
                running = await conn.fetchval(
                    "SELECT count(*) FROM runs WHERE namespace = $1 AND queue = $2 AND concurrency_key = $3 "
                    "AND status = 'executing'",
                    ns,
                    queue,
                    key,
                )
                if running >= q["concurrency_limit"]:
                    return now
            if q["rate_limit"]:
                period = timedelta(milliseconds=q["rate_period_ms"])
                # Prune with a margin: a transaction that began earlier but takes the
                # lock later still needs the rows of its own, earlier window.
                await conn.execute(
                    "DELETE FROM queue_dispatches WHERE namespace = $1 AND queue = $2 "
                    "AND key = $3 AND at <= $4",
                    ns,
                    queue,
                    key,
                    now - period - DISPATCH_PRUNE_MARGIN,
                )
                recent = await conn.fetch(
                    "SELECT at FROM queue_dispatches WHERE namespace = $1 AND queue = $2 AND key = $3 "
                    "AND at > $4 ORDER BY at",
                    ns,
                    queue,
                    key,
                    now - period,
                )
                if len(recent) >= q["rate_limit"]:
                    return recent[len(recent) - q["rate_limit"]]["at"] + period
                await conn.execute(
                    "INSERT INTO queue_dispatches (namespace, queue, key, at) VALUES ($1, $2, $3, $4)",
                    ns,
                    queue,
                    key,
                    now,
                )
        return None

    async def heartbeat(self, namespace: str, run_id: uuid.UUID, attempt: int) -> datetime:
        """Extends the lease of the current attempt; refuses any other attempt."""
        async with self.pool.acquire() as conn:
            due = await conn.fetchval(
                "UPDATE timers SET due_at = now() + make_interval(secs => $3) "
                "WHERE run_id = $1 AND kind = 'lease' AND attempt = $2 "
                "AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND namespace = $4) RETURNING due_at",
                run_id,
                attempt,
                self.lease_seconds,
                namespace,
            )
            if due is None:
                run = await conn.fetchrow(
                    "SELECT * FROM runs WHERE id = $1 AND namespace = $2", run_id, namespace
                )
                if run is None:
                    raise not_found(f"run {run_id} not found in namespace {namespace!r}")
                fence(run, attempt)
                raise precondition(f"attempt {attempt} of run {run_id} has no lease; abandon it")
        return due

    async def record_step(
        self,
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
        conn: asyncpg.Connection | None = None,
    ) -> asyncpg.Record:
        """Appends one step to the journal, once per position, from the current
        attempt only, with its event, and extends the attempt's lease: one
        statement, so one round trip and one commit on the hot path. A refused
        write takes the slower path that explains the refusal."""
        async with self._using(conn) as conn:
            step = await conn.fetchrow(
                hot_path.RECORD_STEP,
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
                self.lease_seconds,
            )
            if step is not None:
                return step
            async with conn.transaction():
                run = await lock_run(conn, namespace, run_id, mode="SHARE")
                fence(run, attempt)
                existing = await conn.fetchrow(
                    "SELECT * FROM steps WHERE run_id = $1 AND position = $2", run_id, position
                )
                if existing is None:  # RECORD_STEP writes whenever the fence passes and the position is free
                    raise ServiceError(
                        grpc.StatusCode.INTERNAL,
                        f"step position {position} of run {run_id} was neither recorded nor refused",
                    )
                if existing["attempt"] == attempt and existing["name"] == name:
                    return existing  # the same write again (its answer was lost): idempotent
                raise already_exists(
                    f"step position {position} of run {run_id} is already recorded "
                    f"(as {existing['name']!r} by attempt {existing['attempt']})"
                )

    async def update_metadata(
        self, namespace: str, run_id: uuid.UUID, attempt: int, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Replaces the run's metadata, from its current attempt only."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await lock_run(conn, namespace, run_id)
            fence(run, attempt)
            await conn.execute(
                "UPDATE runs SET metadata = $2, updated_at = now() WHERE id = $1", run_id, metadata
            )
            await event(conn, run_id, "metadata_updated", attempt)
        return metadata

    async def finish_attempt(
        self,
        namespace: str,
        run_id: uuid.UUID,
        attempt: int,
        outcome: str,
        output: bytes | None,
        encoding: str | None,
        error: dict[str, Any] | None,
        wait: dict[str, Any] | None,
        conn: asyncpg.Connection | None = None,
    ) -> Outcome:
        """Ends the current attempt: completed, failed (retry policy applied) or
        suspended on a wait. A refused suspension (e.g. a child's task is
        unknown) rolls back and leaves the attempt running. A completed attempt
        is one statement; the transaction below handles the rest and refusals."""
        async with self._using(conn) as conn:
            if outcome == "completed":
                run = await conn.fetchrow(
                    hot_path.FINISH_COMPLETED, run_id, namespace, attempt, output, encoding
                )
                if run is not None:
                    effects = Effects(run_changed=True)
                    if run["parent_run_id"] is not None:
                        effects.timer_due = run["updated_at"]
                    return Outcome(run, effects)
            return await self._finish_attempt(conn, namespace, run_id, attempt, outcome, error, wait)

    async def _finish_attempt(
        self,
        conn: asyncpg.Connection,
        namespace: str,
        run_id: uuid.UUID,
        attempt: int,
        outcome: str,
        error: dict[str, Any] | None,
        wait: dict[str, Any] | None,
    ) -> Outcome:
        """Fences, then ends the attempt as suspended or failed (a completed one is
        FINISH_COMPLETED's)."""
        async with conn.transaction():
            run = await lock_run(conn, namespace, run_id)
            fence(run, attempt)
            if outcome == "completed":  # FINISH_COMPLETED writes whenever the fence passes
                raise ServiceError(
                    grpc.StatusCode.INTERNAL,
                    f"attempt {attempt} of run {run_id} was neither completed nor refused",
                )
            await conn.execute(
                "DELETE FROM timers WHERE run_id = $1 AND kind IN ('lease', 'deadline')", run_id
            )
            if outcome == "suspended":
                await self._end_attempt(conn, run, "suspended")
                return await waits.suspend(conn, run, wait)
            return await self._fail(conn, run, "failed", error)

    async def _end_attempt(
        self,
        conn: asyncpg.Connection,
        run: asyncpg.Record,
        status: str,
        error: dict[str, Any] | None = None,
        retry_delay_ms: int | None = None,
    ) -> None:
        """Closes the current attempt and adds its duration to the run's execution time."""
        spent = await conn.fetchval(
            "UPDATE attempts SET status = $3, finished_at = now(), error = $4, retry_delay_ms = $5 "
            "WHERE run_id = $1 AND number = $2 "
            "RETURNING (extract(epoch FROM finished_at - started_at) * 1000)::bigint",
            run["id"],
            run["attempt_count"],
            status,
            error,
            retry_delay_ms,
        )
        await conn.execute("UPDATE runs SET exec_ms = exec_ms + $2 WHERE id = $1", run["id"], spent or 0)

    async def _fail(
        self, conn: asyncpg.Connection, run: asyncpg.Record, attempt_status: str, error: dict[str, Any] | None
    ) -> Outcome:
        """Applies the run's retry policy after a failed or crashed attempt. The
        policy counts failures, not attempts: resuming from a wait is no failure."""
        run_id = run["id"]
        settings = retry_policy.from_dict(run["retry"])
        failures = run["failure_count"] + 1
        await conn.execute("UPDATE runs SET failure_count = $2 WHERE id = $1", run_id, failures)
        if (error or {}).get("non_retryable") or not backoff.has_attempts_left(settings, failures):
            await self._end_attempt(conn, run, attempt_status, error)
            return await end_run(
                conn, run, "crashed" if attempt_status == "crashed" else "failed", error=error
            )
        delay = backoff.backoff_seconds(settings, failures)
        await self._end_attempt(conn, run, attempt_status, error, round(delay * 1000))
        due = datetime.now(UTC) + timedelta(seconds=delay)
        await set_timer(conn, run_id, "retry", run["attempt_count"], due)
        run = await conn.fetchrow(
            "UPDATE runs SET status = 'retrying', next_attempt_at = $2, updated_at = now() "
            "WHERE id = $1 RETURNING *",
            run_id,
            due,
        )
        await event(
            conn,
            run_id,
            f"attempt_{attempt_status}",
            run["attempt_count"],
            error_type=(error or {}).get("type"),
            retry_delay=delay,
            due_at=due.isoformat(),
        )
        return Outcome(run, Effects(run_changed=True, timer_due=due), {"retry_delay": delay})

    # ---- events and tokens -------------------------------------------------------

    async def send_event_to_run(
        self, namespace: str, run_id: uuid.UUID, name: str, key: str, data: bytes, encoding: str
    ) -> Outcome | None:
        """An event for one run: resolves its wait, or is kept (None) until it waits."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await lock_run(conn, namespace, run_id)
            return await waits.send_event(conn, run, name, key, data, encoding)

    async def send_event_by_name(
        self, namespace: str, name: str, key: str, data: bytes, encoding: str
    ) -> list[Outcome]:
        """An event for every run waiting on (name, key) now; each resolved in its own transaction."""
        async with self.pool.acquire() as conn:
            waiting = await conn.fetch(
                "SELECT run_id FROM waits WHERE namespace = $1 AND kind = 'event' "
                "AND event_name = $2 AND event_key = $3",
                namespace,
                name,
                key,
            )
        delivered = []
        for w in waiting:
            async with self.pool.acquire() as conn, conn.transaction():
                run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 FOR UPDATE", w["run_id"])
                wait = await conn.fetchrow(
                    "SELECT * FROM waits WHERE run_id = $1 AND kind = 'event' "
                    "AND event_name = $2 AND event_key = $3",
                    w["run_id"],
                    name,
                    key,
                )
                if run is not None and run["status"] == "waiting" and wait is not None:
                    delivered.append(await waits.resolve(conn, run, wait, data=data, encoding=encoding))
        return delivered

    async def create_token(
        self, namespace: str, run_id: uuid.UUID | None, timeout: float | None, idempotency_key: str | None
    ) -> asyncpg.Record:
        async with self.pool.acquire() as conn, conn.transaction():
            if run_id is not None:
                await lock_run(conn, namespace, run_id, mode="SHARE")
            return await waits.create_token(conn, namespace, run_id, timeout, idempotency_key)

    async def complete_token(
        self, namespace: str, token_id: str, data: bytes, encoding: str
    ) -> tuple[asyncpg.Record, Effects]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await waits.complete_token(conn, namespace, token_id, data, encoding)

    async def get_token(self, namespace: str, token_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            token = await conn.fetchrow(
                "SELECT * FROM wait_tokens WHERE id = $1 AND namespace = $2", token_id, namespace
            )
        if token is None:
            raise not_found(f"wait token {token_id!r} not found in namespace {namespace!r}")
        return token

    # ---- timers ------------------------------------------------------------------

    async def next_due(self) -> datetime | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT least((SELECT min(due_at) FROM timers), "
                "(SELECT min(next_fire_at) FROM schedules WHERE NOT paused))"
            )

    async def due_timers(self, limit: int = 200) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT run_id, kind FROM timers WHERE due_at <= now() ORDER BY due_at LIMIT $1", limit
            )

    async def fire_timer(self, run_id: uuid.UUID, kind: str) -> Outcome | None:
        """Fires one due timer. None when another replica has the run locked, the
        timer moved (a heartbeat extended the lease), or it no longer applies."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 FOR UPDATE SKIP LOCKED", run_id)
            if run is None:
                exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)", run_id)
                if not exists:  # a timer of a run that is gone: drop it
                    await conn.execute("DELETE FROM timers WHERE run_id = $1 AND kind = $2", run_id, kind)
                return None
            attempt = await conn.fetchval(
                "DELETE FROM timers WHERE run_id = $1 AND kind = $2 AND due_at <= now() RETURNING attempt",
                run_id,
                kind,
            )
            if attempt is None:
                return None
            return await self._fire(conn, run, kind, attempt)

    async def _fire(
        self, conn: asyncpg.Connection, run: asyncpg.Record, kind: str, attempt: int
    ) -> Outcome | None:
        status = run["status"]
        current = status == "executing" and run["attempt_count"] == attempt
        if kind == "lease" and current:
            worker = await conn.fetchval(
                "SELECT worker_id FROM attempts WHERE run_id = $1 AND number = $2", run["id"], attempt
            )
            return await self._fail(
                conn,
                run,
                "crashed",
                {
                    "type": "LeaseExpired",
                    "non_retryable": False,
                    "stack_trace": "",
                    "message": f"worker {worker} stopped heartbeating; the lease of attempt {attempt} "
                    f"expired after {self.lease_seconds:g}s",
                },
            )
        if kind == "deadline" and current:
            limit = (run["max_duration_ms"] or 0) / 1000
            await self._end_attempt(conn, run, "timed_out")
            return await end_run(
                conn,
                run,
                "timed_out",
                error={
                    "type": "MaxDurationExceeded",
                    "non_retryable": True,
                    "stack_trace": "",
                    "message": f"run {run['id']} executed longer than its max_duration of {limit:g}s",
                },
            )
        if kind == "retry" and status == "retrying":
            return await waits.requeue(conn, run, "retry")
        if kind == "delay" and status == "delayed":
            return await waits.requeue(conn, run, "delay elapsed")
        if kind == "ttl" and status in ("queued", "delayed") and run["attempt_count"] == 0:
            ttl = (run["ttl_ms"] or 0) / 1000
            return await end_run(
                conn,
                run,
                "expired",
                error={
                    "type": "Expired",
                    "non_retryable": True,
                    "stack_trace": "",
                    "message": f"run {run['id']} was not started within its ttl of {ttl:g}s",
                },
            )
        if kind in ("wake", "signal"):
            return await waits.check(conn, run, timed_out=kind == "wake")
        if kind == "ready" and status == "queued":
            return Outcome(run, Effects(work_ready=True))
        return None
