"""Run state transitions. Each public method is one transaction that writes the
new state, its event, and any queue entry or timer together, so a crash at any
moment leaves either all of it or none. Every transaction locks the run row
first (then queue entry, then timer), so transitions never deadlock.

Fencing: a write from a worker names (run, attempt) and is applied only while
that attempt is the run's current, executing one."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from cairn import backoff, retry_policy
from cairn.statuses import TERMINAL_RUN_STATUSES
from services.common.errors import already_exists, invalid, not_found, precondition

@dataclass
class Effects:
    """What to announce once a transaction has committed."""

    run_changed: bool = False
    work_ready: bool = False
    timer_due: datetime | None = None


@dataclass
class Outcome:
    """A transition's result and the notifications it owes."""

    run: asyncpg.Record
    effects: Effects = field(default_factory=Effects)
    extra: dict[str, Any] = field(default_factory=dict)


def parse_run_id(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise invalid(f"run_id: {run_id!r} is not a valid run id (a UUID)") from None


async def _event(conn: asyncpg.Connection, run_id: uuid.UUID, type_: str, attempt: int = 0,
                 **details: Any) -> None:
    await conn.execute("INSERT INTO run_events (run_id, type, attempt, details) VALUES ($1, $2, $3, $4)",
                       run_id, type_, attempt, details)


async def _lock_run(conn: asyncpg.Connection, namespace: str, run_id: uuid.UUID,
                    mode: str = "UPDATE") -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR {mode}",
                              run_id, namespace)
    if row is None:
        raise not_found(f"run {run_id} not found in namespace {namespace!r}")
    return row


def _fence(run: asyncpg.Record, attempt: int) -> None:
    """Refuses a worker write unless `attempt` is the run's current executing attempt."""
    if run["status"] != "executing" or run["attempt_count"] != attempt:
        raise precondition(
            f"attempt {attempt} of run {run['id']} is no longer current "
            f"(run is {run['status']}, current attempt {run['attempt_count']}); abandon it")


class RunStore:
    """History's transactions on runs, attempts, steps, events and timers."""

    def __init__(self, pool: asyncpg.Pool, lease_seconds: float) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds

    # ---- triggering and reading -------------------------------------------------

    async def trigger(self, namespace: str, task_id: str, data: bytes, encoding: str,
                      idempotency_key: str) -> tuple[Outcome, bool]:
        """Creates a queued run with its event and queue entry; with an
        idempotency key already used for this task, returns that run instead."""
        key = idempotency_key or None
        async with self.pool.acquire() as conn, conn.transaction():
            task = await conn.fetchrow("SELECT queue, retry FROM tasks WHERE namespace = $1 AND task_id = $2",
                                       namespace, task_id)
            if task is None:
                raise not_found(f"task {task_id!r} is not registered in namespace {namespace!r}; "
                                "start a worker that serves it")
            run = await conn.fetchrow(
                "INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, "
                "idempotency_key, retry) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8) "
                "ON CONFLICT (namespace, task_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
                "DO NOTHING RETURNING *",
                uuid.uuid4(), namespace, task_id, task["queue"], data, encoding, key, task["retry"])
            if run is None:
                existing = await conn.fetchrow(
                    "SELECT * FROM runs WHERE namespace = $1 AND task_id = $2 AND idempotency_key = $3",
                    namespace, task_id, key)
                return Outcome(existing), True
            await _event(conn, run["id"], "triggered", idempotency_key=key)
            await conn.execute("INSERT INTO queue_entries (run_id, namespace, task_id, queue) "
                               "VALUES ($1, $2, $3, $4)", run["id"], namespace, task_id, task["queue"])
        return Outcome(run, Effects(run_changed=True, work_ready=True)), False

    async def get(self, namespace: str, run_id: uuid.UUID, *, full: bool = True
                  ) -> tuple[asyncpg.Record, list, list, list]:
        """A run with its attempts, steps and events."""
        async with self.pool.acquire() as conn:
            run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 AND namespace = $2",
                                      run_id, namespace)
            if run is None:
                raise not_found(f"run {run_id} not found in namespace {namespace!r}")
            if not full:
                return run, [], [], []
            attempts = await conn.fetch("SELECT * FROM attempts WHERE run_id = $1 ORDER BY number", run_id)
            steps = await conn.fetch("SELECT * FROM steps WHERE run_id = $1 ORDER BY position", run_id)
            events = await conn.fetch("SELECT * FROM run_events WHERE run_id = $1 ORDER BY id", run_id)
        return run, attempts, steps, events

    async def list_runs(self, namespace: str, task_id: str, statuses: list[str], limit: int,
                   after: tuple[datetime, uuid.UUID] | None) -> list[asyncpg.Record]:
        """Runs newest first, `limit` of them, after the (created_at, id) cursor."""
        clauses, args = ["namespace = $1"], [namespace]
        if task_id:
            args.append(task_id)
            clauses.append(f"task_id = ${len(args)}")
        if statuses:
            args.append(statuses)
            clauses.append(f"status = ANY(${len(args)})")
        if after is not None:
            args.extend(after)
            clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        sql = (f"SELECT * FROM runs WHERE {' AND '.join(clauses)} "
               f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}")
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    # ---- cancel ------------------------------------------------------------------

    async def cancel(self, namespace: str, run_id: uuid.UUID, reason: str) -> Outcome:
        """Ends an unfinished run as canceled; an executing attempt is fenced off
        so its next checkpoint or heartbeat is refused."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await _lock_run(conn, namespace, run_id)
            if run["status"] in TERMINAL_RUN_STATUSES:
                raise precondition(f"run {run_id} already finished as {run['status']}; "
                                   "only unfinished runs can be canceled")
            err = {"type": "Canceled", "message": reason or "canceled by request",
                   "stack_trace": "", "non_retryable": True}
            if run["status"] == "executing":
                await conn.execute("UPDATE attempts SET status = 'canceled', finished_at = now() "
                                   "WHERE run_id = $1 AND number = $2", run_id, run["attempt_count"])
            await conn.execute("DELETE FROM queue_entries WHERE run_id = $1", run_id)
            await conn.execute("DELETE FROM timers WHERE run_id = $1", run_id)
            run = await conn.fetchrow(
                "UPDATE runs SET status = 'canceled', error = $2, finished_at = now(), updated_at = now(), "
                "next_attempt_at = NULL WHERE id = $1 RETURNING *", run_id, err)
            await _event(conn, run_id, "canceled", run["attempt_count"], reason=reason)
        return Outcome(run, Effects(run_changed=True))

    # ---- attempts ----------------------------------------------------------------

    async def start_attempt(self, namespace: str, run_id: uuid.UUID, claim_token: uuid.UUID,
                            worker_id: str, worker_version: str
                            ) -> tuple[Outcome, list[asyncpg.Record]] | None:
        """Starts the next attempt of a claimed run, with its lease; None when the
        claim is stale (run canceled, claim expired and taken by another)."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 AND namespace = $2 FOR UPDATE",
                                      run_id, namespace)
            if run is None or run["status"] != "queued":
                # A stale entry must not be claimed again and again.
                await conn.execute("DELETE FROM queue_entries WHERE run_id = $1", run_id)
                return None
            entry = await conn.fetchval("DELETE FROM queue_entries WHERE run_id = $1 AND claim_token = $2 "
                                        "RETURNING run_id", run_id, claim_token)
            if entry is None:
                return None
            number = run["attempt_count"] + 1
            run = await conn.fetchrow(
                "UPDATE runs SET status = 'executing', attempt_count = $2, updated_at = now(), "
                "started_at = coalesce(started_at, now()), next_attempt_at = NULL "
                "WHERE id = $1 RETURNING *", run_id, number)
            await conn.execute("INSERT INTO attempts (run_id, number, status, worker_id, worker_version) "
                               "VALUES ($1, $2, 'executing', $3, $4)", run_id, number, worker_id,
                               worker_version)
            await conn.execute(
                "INSERT INTO timers (run_id, kind, attempt, due_at) "
                "VALUES ($1, 'lease', $2, now() + make_interval(secs => $3)) "
                "ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at",
                run_id, number, self.lease_seconds)
            await _event(conn, run_id, "attempt_started", number, worker_id=worker_id,
                         worker_version=worker_version)
            steps = await conn.fetch("SELECT * FROM steps WHERE run_id = $1 ORDER BY position", run_id)
        return Outcome(run, Effects(run_changed=True)), steps

    async def heartbeat(self, namespace: str, run_id: uuid.UUID, attempt: int) -> datetime:
        """Extends the lease of the current attempt; refuses any other attempt."""
        async with self.pool.acquire() as conn:
            due = await conn.fetchval(
                "UPDATE timers SET due_at = now() + make_interval(secs => $3) "
                "WHERE run_id = $1 AND kind = 'lease' AND attempt = $2 "
                "AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND namespace = $4) RETURNING due_at",
                run_id, attempt, self.lease_seconds, namespace)
            if due is None:
                run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 AND namespace = $2",
                                          run_id, namespace)
                if run is None:
                    raise not_found(f"run {run_id} not found in namespace {namespace!r}")
                _fence(run, attempt)
                raise precondition(f"attempt {attempt} of run {run_id} has no lease; abandon it")
        return due

    async def record_step(self, namespace: str, run_id: uuid.UUID, attempt: int, position: int,
                          name: str, status: str, output: bytes | None, encoding: str | None,
                          error: dict[str, Any] | None, tries: int) -> asyncpg.Record:
        """Appends one step to the journal, once per position, from the current
        attempt only; also extends the attempt's lease."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await _lock_run(conn, namespace, run_id, mode="SHARE")
            _fence(run, attempt)
            step = await conn.fetchrow(
                "INSERT INTO steps (run_id, position, name, status, output, output_encoding, error, "
                "attempt, tries) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "ON CONFLICT (run_id, position) DO NOTHING RETURNING *",
                run_id, position, name, status, output, encoding, error, attempt, tries)
            if step is None:
                existing = await conn.fetchrow("SELECT * FROM steps WHERE run_id = $1 AND position = $2",
                                               run_id, position)
                if existing["attempt"] == attempt and existing["name"] == name:
                    return existing  # the same write again (its answer was lost): idempotent
                raise already_exists(f"step position {position} of run {run_id} is already recorded "
                                     f"(as {existing['name']!r} by attempt {existing['attempt']})")
            await _event(conn, run_id, "step_recorded", attempt, position=position, name=name,
                         status=status)
            await conn.execute("UPDATE timers SET due_at = now() + make_interval(secs => $2) "
                               "WHERE run_id = $1 AND kind = 'lease'", run_id, self.lease_seconds)
        return step

    async def finish_attempt(self, namespace: str, run_id: uuid.UUID, attempt: int, outcome: str,
                             output: bytes | None, encoding: str | None,
                             error: dict[str, Any] | None, wake_at: datetime | None) -> Outcome:
        """Ends the current attempt: completed, failed (retry policy applied) or
        suspended until wake_at."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await _lock_run(conn, namespace, run_id)
            _fence(run, attempt)
            await conn.execute("DELETE FROM timers WHERE run_id = $1 AND kind = 'lease'", run_id)
            if outcome == "completed":
                await self._end_attempt(conn, run_id, attempt, "completed")
                run = await conn.fetchrow(
                    "UPDATE runs SET status = 'completed', output = $2, output_encoding = $3, "
                    "error = NULL, finished_at = now(), updated_at = now() WHERE id = $1 RETURNING *",
                    run_id, output, encoding)
                await _event(conn, run_id, "completed", attempt)
                return Outcome(run, Effects(run_changed=True))
            if outcome == "suspended":
                await self._end_attempt(conn, run_id, attempt, "suspended")
                return await self._schedule(conn, run, "waiting", "wake", attempt, wake_at,
                                            "suspended")
            return await self._fail(conn, run, attempt, "failed", error)

    async def _end_attempt(self, conn: asyncpg.Connection, run_id: uuid.UUID, attempt: int,
                           status: str, error: dict[str, Any] | None = None,
                           retry_delay_ms: int | None = None) -> None:
        await conn.execute("UPDATE attempts SET status = $3, finished_at = now(), error = $4, "
                           "retry_delay_ms = $5 WHERE run_id = $1 AND number = $2",
                           run_id, attempt, status, error, retry_delay_ms)

    async def _fail(self, conn: asyncpg.Connection, run: asyncpg.Record, attempt: int,
                    attempt_status: str, error: dict[str, Any] | None) -> Outcome:
        """Applies the run's retry policy after a failed or crashed attempt."""
        run_id = run["id"]
        settings = retry_policy.from_dict(run["retry"])
        final = (error or {}).get("non_retryable") or not backoff.has_attempts_left(settings, attempt)
        if final:
            await self._end_attempt(conn, run_id, attempt, attempt_status, error)
            status = "crashed" if attempt_status == "crashed" else "failed"
            run = await conn.fetchrow(
                "UPDATE runs SET status = $2, error = $3, finished_at = now(), updated_at = now() "
                "WHERE id = $1 RETURNING *", run_id, status, error)
            await _event(conn, run_id, status, attempt, error_type=(error or {}).get("type"))
            return Outcome(run, Effects(run_changed=True))
        delay = backoff.backoff_seconds(settings, attempt)
        await self._end_attempt(conn, run_id, attempt, attempt_status, error, round(delay * 1000))
        due = datetime.now(timezone.utc) + timedelta(seconds=delay)
        outcome = await self._schedule(conn, run, "retrying", "retry", attempt, due,
                                       f"attempt_{attempt_status}", error_type=(error or {}).get("type"),
                                       retry_delay=delay)
        outcome.extra["retry_delay"] = delay
        return outcome

    async def _schedule(self, conn: asyncpg.Connection, run: asyncpg.Record, status: str, kind: str,
                        attempt: int, due: datetime | None, event: str, **details: Any) -> Outcome:
        """Parks a run in `status` until a timer of `kind` fires at `due`."""
        due = due or datetime.now(timezone.utc)
        await conn.execute("INSERT INTO timers (run_id, kind, attempt, due_at) VALUES ($1, $2, $3, $4) "
                           "ON CONFLICT (run_id, kind) DO UPDATE SET attempt = EXCLUDED.attempt, "
                           "due_at = EXCLUDED.due_at", run["id"], kind, attempt, due)
        run = await conn.fetchrow("UPDATE runs SET status = $2, next_attempt_at = $3, updated_at = now() "
                                  "WHERE id = $1 RETURNING *", run["id"], status, due)
        await _event(conn, run["id"], event, attempt, due_at=due.isoformat(), **details)
        return Outcome(run, Effects(run_changed=True, timer_due=due))

    # ---- timers ------------------------------------------------------------------

    async def next_due(self) -> datetime | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchval("SELECT min(due_at) FROM timers")

    async def due_timers(self, limit: int = 200) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch("SELECT run_id, kind FROM timers WHERE due_at <= now() "
                                    "ORDER BY due_at LIMIT $1", limit)

    async def fire_timer(self, run_id: uuid.UUID, kind: str) -> Outcome | None:
        """Fires one due timer: a lease that expired crashes its attempt; a retry
        or wake-up timer queues the run again. None when another replica has the
        run locked or the timer moved (a heartbeat extended the lease)."""
        async with self.pool.acquire() as conn, conn.transaction():
            run = await conn.fetchrow("SELECT * FROM runs WHERE id = $1 FOR UPDATE SKIP LOCKED", run_id)
            if run is None:
                return None
            attempt = await conn.fetchval("DELETE FROM timers WHERE run_id = $1 AND kind = $2 "
                                          "AND due_at <= now() RETURNING attempt", run_id, kind)
            if attempt is None:
                return None
            if kind == "lease":
                if run["status"] != "executing" or run["attempt_count"] != attempt:
                    return None
                worker = await conn.fetchval("SELECT worker_id FROM attempts WHERE run_id = $1 "
                                             "AND number = $2", run_id, attempt)
                err = {"type": "LeaseExpired", "non_retryable": False, "stack_trace": "",
                       "message": f"worker {worker} stopped heartbeating; the lease of attempt "
                                  f"{attempt} expired after {self.lease_seconds:g}s"}
                return await self._fail(conn, run, attempt, "crashed", err)
            if run["status"] not in ("retrying", "waiting"):
                return None
            await conn.execute("INSERT INTO queue_entries (run_id, namespace, task_id, queue) "
                               "VALUES ($1, $2, $3, $4) ON CONFLICT (run_id) DO NOTHING",
                               run_id, run["namespace"], run["task_id"], run["queue"])
            run = await conn.fetchrow("UPDATE runs SET status = 'queued', updated_at = now() "
                                      "WHERE id = $1 RETURNING *", run_id)
            await _event(conn, run_id, "requeued", attempt, reason=kind)
        return Outcome(run, Effects(run_changed=True, work_ready=True))

