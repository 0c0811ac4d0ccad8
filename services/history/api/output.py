"""Log lines and stream chunks of a running attempt (AppendRunOutput), and
reading the lines back (ListRunLogs). They are events of the run's log, so a
watcher sees them in order with every other change; they are neither steps
nor replayed. A run keeps at most the bounds of cairn.limits: what is over them
is dropped and counted, because a task must not fail for logging too much."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from cairn import payloads
from cairn.limits import MAX_LOG_LINES_PER_RUN, MAX_STREAM_BYTES_PER_RUN, MAX_STREAM_CHUNKS_PER_RUN
from services.common.errors import not_found
from services.history.api.transition import Conn, Row, fence
from services.history.sql import output as sql
from services.history.sql import reads as reads_sql


@dataclass
class Output:
    """One entry to append: a 'log' or 'stream' event with its details."""

    type: str
    details: dict[str, Any]
    at: datetime | None = None
    size: int = 0  # a chunk's bytes


@dataclass
class Appended:
    """How many entries were dropped at the run's bounds."""

    logs_dropped: int = 0
    chunks_dropped: int = 0


def log_details(
    level: str,
    message: str,
    logger: str,
    step_position: int,
    step_name: str,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """A 'log' event's details (common.proto RunEvent)."""
    inside = step_position >= 0
    return {
        "level": level,
        "message": message,
        "logger": logger,
        "step_position": step_position if inside else None,
        "step_name": step_name if inside else None,
        "fields": fields,
    }


def chunk_details(stream: str, data: bytes, encoding: str) -> dict[str, Any]:
    """A 'stream' event's details: a JSON chunk as its value, another one in base64."""
    if encoding == payloads.JSON:
        return {"stream": stream, "value": json.loads(data)}
    return {"stream": stream, "encoding": encoding, "data_base64": base64.b64encode(data).decode()}


async def append(
    conn: Conn, namespace: str, run_id: uuid.UUID, attempt: int, token: str, outputs: list[Output]
) -> Appended:
    """Appends the entries of the run's current attempt, in order, up to the
    run's bounds, in one transaction; refuses an attempt that is gone, or a
    token that is not the attempt's."""
    result = Appended()
    async with conn.transaction():
        run = await conn.fetchrow(sql.LOCK_COUNTERS, run_id, namespace)
        if run is None:
            raise not_found(f"run {run_id} not found in namespace {namespace!r}")
        await fence(conn, run, attempt, token)
        lines, chunks, size = run["log_lines"], run["stream_chunks"], run["stream_bytes"]
        kept: list[Output] = []
        for o in outputs:
            if o.type == "log":
                if lines >= MAX_LOG_LINES_PER_RUN:
                    result.logs_dropped += 1
                    continue
                lines += 1
            else:
                if chunks >= MAX_STREAM_CHUNKS_PER_RUN or size + o.size > MAX_STREAM_BYTES_PER_RUN:
                    result.chunks_dropped += 1
                    continue
                chunks += 1
                size += o.size
            kept.append(o)
        if kept:
            await conn.execute(
                sql.APPEND_EVENTS,
                run_id,
                attempt,
                [o.type for o in kept],
                [json.dumps(o.details) for o in kept],
                [o.at for o in kept],
            )
            await conn.execute(
                sql.COUNT_OUTPUT,
                run_id,
                lines - run["log_lines"],
                chunks - run["stream_chunks"],
                size - run["stream_bytes"],
            )
    return result


async def log_lines(
    pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID, after_id: int, limit: int
) -> tuple[list[Row], bool]:
    """Up to `limit` log lines after after_id, and whether more follow."""
    async with pool.acquire() as conn:
        if await conn.fetchrow(reads_sql.RUN, run_id, namespace) is None:
            raise not_found(f"run {run_id} not found in namespace {namespace!r}")
        rows = await conn.fetch(sql.LOG_LINES_AFTER, run_id, after_id, limit + 1)
    return list(rows[:limit]), len(rows) > limit
