"""Cairn's run tables for workload g: emptying them, and loading a month of finished
runs into them with COPY."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

from bench.common import log

RUN_TABLES = (
    "runs",
    "attempts",
    "steps",
    "run_events",
    "timers",
    "queue_entries",
    "waits",
    "child_waits",
    "run_inbox",
)


async def truncate_runs(pool: Any) -> None:
    """Empties the run tables (the cluster is idle: every run is terminal)."""
    await pool.execute(f"TRUNCATE {', '.join(RUN_TABLES)}")
    await vacuum_analyze(pool)


async def vacuum_analyze(pool: Any) -> None:
    for table in ("runs", "attempts", "steps", "run_events", "queue_entries", "timers"):
        await pool.execute(f"VACUUM ANALYZE {table}")


async def load_finished_runs(pool: Any, rows: int, chunk: int = 50_000) -> dict[str, int]:
    """COPYs `rows` completed runs of the bench tasks, as a month of history: per
    run one attempt, one step and the four events a 1-step run writes (triggered,
    attempt_started, step_recorded, completed), with the same columns as the runs
    the bench itself makes. Spread over five task ids and the 30 days before now."""
    tasks = ["one_step", "ten_steps", "latency", "many_steps", "drain"]
    retry = json.dumps(
        {"factor": 2.0, "jitter": False, "max_timeout": 60.0, "min_timeout": 1.0, "max_attempts": 3}
    )
    triggered_details = json.dumps({"schedule_id": None, "parent_run_id": None, "idempotency_key": None})
    started_details = json.dumps({"worker_id": "bench-loader", "worker_version": "dev"})
    step_details = json.dumps({"name": "noop", "status": "completed", "position": 0})
    completed_details = json.dumps({"error_type": None})
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    span = 30 * 86400.0
    payload = b'{"i": 0}'
    output = b"0"
    counts = {"runs": 0, "attempts": 0, "steps": 0, "run_events": 0}
    rnd = random.Random(7)
    done = 0
    while done < rows:
        m = min(chunk, rows - done)
        runs, attempts, steps, events = [], [], [], []
        for i in range(m):
            rid = uuid.UUID(int=rnd.getrandbits(128), version=4)
            task = tasks[(done + i) % len(tasks)]
            created = now - dt.timedelta(seconds=span * (1 - (done + i) / rows))
            started = created + dt.timedelta(milliseconds=3)
            finished = started + dt.timedelta(milliseconds=4)
            runs.append(
                (
                    rid,
                    "default",
                    task,
                    task,
                    "completed",
                    payload,
                    "json/plain",
                    output,
                    "json/plain",
                    1,
                    retry,
                    created,
                    finished,
                    started,
                    finished,
                    4,
                )
            )
            attempts.append((rid, 1, "completed", "bench-loader", "dev", started, finished))
            steps.append(
                (
                    rid,
                    0,
                    "noop",
                    "completed",
                    output,
                    "json/plain",
                    1,
                    1,
                    started + dt.timedelta(milliseconds=1),
                )
            )
            events.append((rid, "triggered", 0, triggered_details, created))
            events.append((rid, "attempt_started", 1, started_details, started))
            events.append((rid, "step_recorded", 1, step_details, started + dt.timedelta(milliseconds=1)))
            events.append((rid, "completed", 1, completed_details, finished))
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "runs",
                    records=runs,
                    columns=[
                        "id",
                        "namespace",
                        "task_id",
                        "queue",
                        "status",
                        "input",
                        "input_encoding",
                        "output",
                        "output_encoding",
                        "attempt_count",
                        "retry",
                        "created_at",
                        "updated_at",
                        "started_at",
                        "finished_at",
                        "exec_ms",
                    ],
                )
                await conn.copy_records_to_table(
                    "attempts",
                    records=attempts,
                    columns=[
                        "run_id",
                        "number",
                        "status",
                        "worker_id",
                        "worker_version",
                        "started_at",
                        "finished_at",
                    ],
                )
                await conn.copy_records_to_table(
                    "steps",
                    records=steps,
                    columns=[
                        "run_id",
                        "position",
                        "name",
                        "status",
                        "output",
                        "output_encoding",
                        "attempt",
                        "tries",
                        "recorded_at",
                    ],
                )
                await conn.copy_records_to_table(
                    "run_events", records=events, columns=["run_id", "type", "attempt", "details", "at"]
                )
        counts["runs"] += len(runs)
        counts["attempts"] += len(attempts)
        counts["steps"] += len(steps)
        counts["run_events"] += len(events)
        done += m
        log(f"  g: loaded {done:,} of {rows:,} finished runs")
    return counts
