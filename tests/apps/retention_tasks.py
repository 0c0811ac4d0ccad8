"""Tasks of the retention tests (tests/cluster/test_retention.py), served by
`cairn worker tests.apps.retention_tasks`. Files live in RETENTION_TASKS_DIR.

- "ret-steps": step "one", a wait token (a wait_tokens row of the run), then
  (payload {"hold": true}) a step that touches "held-<run_id>" and waits,
  heartbeating, for the go-file "go-<run_id>"; then step "two".
- "ret-fail": fails at once (NonRetryableError).
- "ret-event": waits for event "go" keyed by its own run id.
- "ret-child": payload {"wait": bool}: waits like "ret-event", or returns at once.
- "ret-parent": payload {"children": [bool, ...]}: one "ret-child" per item
  ({"wait": item}), all awaited; returns their outputs.
- "ret-paused": on queue "ret-paused", which the test pauses: stays queued.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import NonRetryableError, Queue, Retry, context, step, task, wait

DIR_ENV = "RETENTION_TASKS_DIR"
HOLD_LIMIT = 60.0
ONCE = Retry(max_attempts=1)


def _dir() -> Path:
    d = os.environ.get(DIR_ENV)
    if not d:
        raise RuntimeError(f"{DIR_ENV} is not set; tests/cluster/test_retention.py passes it to workers")
    return Path(d)


@step(name="one")
async def one() -> int:
    return 1


@step(name="two")
async def two() -> int:
    return 2


@step(name="hold")
async def hold() -> str:
    (_dir() / f"held-{context.run_id}").write_text(str(os.getpid()))
    go = _dir() / f"go-{context.run_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD_LIMIT
    while not go.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"go-file {go} never appeared")
        await asyncio.sleep(0.02)
    return "released"


@task(id="ret-steps", retry=ONCE)
async def steps(payload: dict) -> dict:
    await one()
    token = await wait.create_token(timeout=3600)
    if payload.get("hold"):
        await hold()
    await two()
    return {"token": token.id}


@task(id="ret-fail", retry=ONCE)
async def fail(payload: dict) -> None:
    raise NonRetryableError("ret-fail fails")


@task(id="ret-event", retry=ONCE)
async def event(payload: dict) -> object:
    return await wait.for_event("go", key=context.run_id)


@task(id="ret-child", retry=ONCE)
async def child(payload: dict) -> object:
    if payload.get("wait"):
        return await wait.for_event("go", key=context.run_id)
    return "child done"


@task(id="ret-parent", retry=ONCE)
async def parent(payload: dict) -> list:
    results = await child.batch_trigger_and_wait([{"wait": w} for w in payload["children"]])
    return [r.unwrap() for r in results]


@task(id="ret-paused", queue=Queue("ret-paused"), retry=ONCE)
async def paused(payload: dict) -> str:
    return "ran"
