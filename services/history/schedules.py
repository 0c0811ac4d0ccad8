"""Schedules: declared with a task or created through the API. History fires
them from its timer loop: each tick is claimed with a row lock (SKIP LOCKED)
and creates its run with the idempotency key "<dedup key>:<tick>", so a tick
fires exactly once however many history replicas run.

Missed ticks (the cluster was down): caught up once — one run for the latest
missed tick, then the schedule goes on from the next tick after now."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from cairn import payloads
from cairn.cron import Cron
from services.common.errors import ServiceError, already_exists, invalid, not_found
from services.history.api.transition import NewRun, Outcome, Row
from services.history.api.trigger import create_run
from services.history.sql import schedules as sql

log = logging.getLogger("cairn.history.schedules")
DECLARED_PREFIX = "task:"
MAX_CATCH_UP_STEPS = 100_000


def parse_cron(expression: str, tz: str) -> Cron:
    try:
        return Cron.parse(expression, tz or "UTC")
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _latest_tick(cron: Cron, first_due: datetime, now: datetime) -> datetime:
    """The latest tick at or before now, starting from a due tick."""
    tick = first_due
    for _ in range(MAX_CATCH_UP_STEPS):
        following = cron.next_after(tick)
        if following > now:
            return tick
        tick = following
    return tick


class ScheduleStore:
    """History's transactions on schedules."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        namespace: str,
        schedule_id: str,
        task_id: str,
        cron: str,
        tz: str,
        data: bytes,
        encoding: str,
        dedup_key: str,
    ) -> Row:
        parsed = parse_cron(cron, tz)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(sql.TASK_EXISTS, namespace, task_id):
                raise not_found(
                    f"task {task_id!r} is not registered in namespace {namespace!r}; "
                    "start a worker that serves it"
                )
            row = await conn.fetchrow(
                sql.CREATE,
                namespace,
                schedule_id,
                task_id,
                cron,
                tz or "UTC",
                data,
                encoding,
                dedup_key or schedule_id,
                parsed.next_after(datetime.now(UTC)),
            )
        if row is None:
            raise already_exists(f"schedule {schedule_id!r} already exists in namespace {namespace!r}")
        return row

    async def list(self, namespace: str, task_id: str) -> list[Row]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql.LIST, namespace, task_id)

    async def set_paused(self, namespace: str, schedule_id: str, paused: bool) -> Row:
        """Pauses or resumes; a resumed schedule fires from its next tick after now."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.LOCK, namespace, schedule_id)
            if row is None:
                raise not_found(f"schedule {schedule_id!r} not found in namespace {namespace!r}")
            next_fire = row["next_fire_at"]
            if not paused and row["paused"]:
                next_fire = parse_cron(row["cron"], row["timezone"]).next_after(datetime.now(UTC))
            updated = await conn.fetchrow(sql.SET_PAUSED, namespace, schedule_id, paused, next_fire)
            assert updated is not None
            return updated

    async def delete(self, namespace: str, schedule_id: str) -> None:
        async with self.pool.acquire() as conn:
            deleted = await conn.fetchval(sql.DELETE, namespace, schedule_id)
        if deleted is None:
            raise not_found(f"schedule {schedule_id!r} not found in namespace {namespace!r}")

    async def sync_declared(self, namespace: str, tasks: Sequence[tuple[str, str, str]]) -> None:
        """Makes declared schedules match (task_id, cron, timezone) of a registration;
        cron '' drops the task's declared schedule. An unchanged schedule keeps its next tick."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            for task_id, cron, tz in tasks:
                sid = DECLARED_PREFIX + task_id
                if not cron:
                    await conn.execute(sql.DROP_DECLARED, namespace, sid)
                    continue
                next_fire = parse_cron(cron, tz).next_after(now)
                await conn.execute(
                    sql.UPSERT_DECLARED,
                    namespace,
                    sid,
                    task_id,
                    cron,
                    tz or "UTC",
                    next_fire,
                )

    async def fire_due(self) -> tuple[bool, Outcome | None]:
        """Fires the most overdue schedule tick: (False, None) when none is due;
        (True, outcome) otherwise, outcome None when the tick made no new run."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.TAKE_DUE)
            if row is None:
                return False, None
            now = datetime.now(UTC)
            cron = parse_cron(row["cron"], row["timezone"])
            tick = _latest_tick(cron, row["next_fire_at"], now)
            data, encoding = row["payload"], row["payload_encoding"]
            if row["declared"] or data is None:
                data = payloads.encode_json({"schedule_id": row["id"], "scheduled_at": tick.isoformat()})
                encoding = payloads.JSON
            outcome: Outcome | None = None
            run_id = None
            try:
                async with conn.transaction():
                    outcome, _ = await create_run(
                        conn,
                        NewRun(
                            namespace=row["namespace"],
                            task_id=row["task_id"],
                            data=data,
                            encoding=encoding,
                            idempotency_key=f"{row['dedup_key']}:{tick.isoformat()}",
                            schedule_id=row["id"],
                        ),
                    )
                    run_id = outcome.run["id"]
            except ServiceError as exc:  # task gone, queue full: skip the tick, keep the schedule
                log.warning(
                    "schedule %s of namespace %s skipped tick %s: %s",
                    row["id"],
                    row["namespace"],
                    tick.isoformat(),
                    exc,
                )
            await conn.execute(
                sql.FIRED,
                row["namespace"],
                row["id"],
                cron.next_after(tick),
                tick,
                run_id,
            )
        return True, outcome
