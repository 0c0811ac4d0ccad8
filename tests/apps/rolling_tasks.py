"""Tasks for the restart tests (tests/cluster/test_worker_shutdown.py and
test_rolling_restart.py), served by real `cairn worker tests.apps.rolling_tasks`
processes. A run of "rolling-steps" is payload["steps"] steps of payload["ms"]
milliseconds each, one after the other. Each step body writes a line when it
starts and one when it is done, "<event> <run_id> <position> <attempt> <pid>"
(event "start" or "done"), to ROLLING_TASKS_DIR/steps.log, so a test counts how
often each step ran, in which attempt and on which worker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import Retry, context, step, task


def _log() -> Path:
    d = os.environ.get("ROLLING_TASKS_DIR")
    if not d:
        raise RuntimeError("ROLLING_TASKS_DIR is not set; the restart tests pass it to their workers")
    return Path(d) / "steps.log"


def emit(event: str, position: int) -> None:
    """One line, one short write on an O_APPEND file: lines of concurrent
    writers (slots, workers) never interleave."""
    line = f"{event} {context.run_id} {position} {context.attempt} {os.getpid()}\n".encode()
    fd = os.open(_log(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@step(name="rolling-step")
async def one_step(position: int, ms: int) -> int:
    emit("start", position)
    await asyncio.sleep(ms / 1000)
    emit("done", position)
    return position


@task(id="rolling-steps", retry=Retry(max_attempts=20, min_timeout=0.1, max_timeout=0.5))
async def rolling_steps(payload: dict) -> dict:
    total = 0
    for position in range(payload["steps"]):
        total += await one_step(position, payload["ms"])
    return {"total": total}
