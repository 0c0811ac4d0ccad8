"""Tasks for the queue concurrency-limit tests (tests/cluster/test_concurrency_limits.py), served
by real `cairn worker tests.apps.limit_tasks` processes.

Each run's body appends two lines to LIMIT_TASKS_DIR/bodies.log:
``"start <run_id> <attempt> <key> <time.time()> <pid>"`` when it begins and
``"end <run_id> <attempt> <key> <time.time()> <pid>"`` when it is done, with a
short asyncio.sleep in between (payload "ms", default 60), so runs that the
limit lets through together overlap. Wall-clock time, because several worker
processes write to the same file. Each line is one write(2) on an O_APPEND
descriptor, so concurrent writers never interleave. <key> is the payload's
"key" (the run's concurrency key, passed in by the test) or "-".
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from worker_sdk import Queue, Retry, context, task

# Crashed attempts (a test kills a matching replica) are retried quickly.
RETRY = Retry(max_attempts=5, min_timeout=0.1, max_timeout=0.5)


def _log_path() -> Path:
    d = os.environ.get("LIMIT_TASKS_DIR")
    if not d:
        raise RuntimeError(
            "LIMIT_TASKS_DIR is not set; tests/cluster/test_concurrency_limits.py passes it to workers"
        )
    return Path(d) / "bodies.log"


def emit(event: str, key: str) -> None:
    line = (f"{event} {context.run_id} {context.attempt} {key} {time.time():.6f} {os.getpid()}\n").encode()
    fd = os.open(_log_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def _body(payload: dict) -> dict:
    key = payload.get("key") or "-"
    emit("start", key)
    await asyncio.sleep(payload.get("ms", 60) / 1000)
    emit("end", key)
    return {"i": payload.get("i"), "pid": os.getpid()}


@task(id="limit-five", queue=Queue("limit-five", concurrency_limit=5), retry=RETRY)
async def limit_five(payload: dict) -> dict:
    """Test 1 (two matching replicas, limit 5)."""
    return await _body(payload)


@task(id="limit-keyed", queue=Queue("limit-keyed", concurrency_limit=2), retry=RETRY)
async def limit_keyed(payload: dict) -> dict:
    """Test 2 (limit 2 per concurrency key)."""
    return await _body(payload)


@task(id="limit-change", queue=Queue("limit-change", concurrency_limit=5), retry=RETRY)
async def limit_change(payload: dict) -> dict:
    """Test 3 (the limit is raised from 5 to 10 with UpdateQueue under load)."""
    return await _body(payload)


@task(id="limit-kill", queue=Queue("limit-kill", concurrency_limit=5), retry=RETRY)
async def limit_kill(payload: dict) -> dict:
    """Test 4 (a matching replica is SIGKILLed under load, limit 5)."""
    return await _body(payload)
