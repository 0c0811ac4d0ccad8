"""Tasks served by `cairn worker option_tasks` in tests/cluster/test_trigger_options.py and
tests/cluster/test_schedules.py (option_helpers.py starts them with cwd=tests/apps, so this
module imports as `option_tasks`).

- "opt-echo": no steps; returns {"payload": payload, "run_id": run id}.
- "opt-record": appends "<run_id>" to the file named by payload["log"]; so a test
  sees the order in which runs started on a one-slot worker.
- "opt-gated": step "gate" waits until the file payload["release"] exists, then
  the task returns. A run that started in time and is still executing when its
  ttl passes must not expire.
- "opt-stuck" and "opt-stuck-declared" (@task(max_duration=2)): step "wait-for-file"
  polls for payload["release"], which the test creates only after the run timed
  out. If the step body is stopped (the task function cancelled) it writes
  "cancelled <run_id>" to payload["cancelled"]; if the wait ever ended it would
  write "side effect <run_id>" to payload["side_effect"], which must never happen.
  Both retry (3 attempts), so a timed-out run that were retried would show it.
- "opt-metadata": returns the metadata it saw at start, then
  context.update_metadata(progress=100) and what that returned.
- "opt-scheduled": returns its payload. Its declared schedule is the cron
  expression in $OPTION_TASKS_SCHEDULE (none when unset), so that only the test of
  declared schedules makes it fire; every other worker of this module declares
  the task without a schedule.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import Retry, context, step, task

SCHEDULE_ENV = "OPTION_TASKS_SCHEDULE"
GATE_TIMEOUT = 60.0
STUCK_RETRY = Retry(max_attempts=3, min_timeout=0.1, max_timeout=0.2)


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def _until_exists(path: str, timeout: float = GATE_TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not Path(path).exists():
        if loop.time() > deadline:
            raise TimeoutError(f"file {path} never appeared")
        await asyncio.sleep(0.05)


@task(id="opt-echo", retry=Retry(max_attempts=1))
async def opt_echo(payload: object) -> dict:
    return {"payload": payload, "run_id": context.run_id}


@task(id="opt-record", retry=Retry(max_attempts=1))
async def opt_record(payload: dict) -> dict:
    _append(payload["log"], context.run_id)
    return {"recorded": context.run_id}


@step(name="gate")
async def gate(release: str) -> str:
    await _until_exists(release)
    return "released"


@task(id="opt-gated", retry=Retry(max_attempts=1))
async def opt_gated(payload: dict) -> dict:
    await gate(payload["release"])
    return {"released": True}


@step(name="wait-for-file")
async def wait_for_file(release: str, cancelled: str, side_effect: str) -> str:
    try:
        await _until_exists(release, timeout=120.0)
    except asyncio.CancelledError:
        _append(cancelled, f"cancelled {context.run_id}")
        raise
    _append(side_effect, f"side effect {context.run_id}")
    return "file came"


async def _stuck(payload: dict) -> dict:
    await wait_for_file(payload["release"], payload["cancelled"], payload["side_effect"])
    return {"finished": True}


@task(id="opt-stuck", retry=STUCK_RETRY)
async def opt_stuck(payload: dict) -> dict:
    return await _stuck(payload)


@task(id="opt-stuck-declared", retry=STUCK_RETRY, max_duration=2)
async def opt_stuck_declared(payload: dict) -> dict:
    return await _stuck(payload)


@task(id="opt-metadata", retry=Retry(max_attempts=1))
async def opt_metadata(payload: object) -> dict:
    seen = context.metadata
    stored = await context.update_metadata(progress=100)
    return {"seen": seen, "stored": stored, "after": context.metadata}


@task(id="opt-scheduled", retry=Retry(max_attempts=1), schedule=os.environ.get(SCHEDULE_ENV) or None)
async def opt_scheduled(payload: object) -> object:
    return payload
