"""Tasks served by `cairn worker basic_tasks` in the public API tests (tests/cluster/
test_python_client.py, test_grpcurl_protocol.py, test_idempotency.py, test_cancel.py,
test_cli_runs.py; api_helpers.py starts them with cwd=tests/apps, so this module imports
as `basic_tasks`).

- "three-steps": three named steps (add, multiply, describe); returns their results.
- "echo": no steps; returns its payload.
- "counted": appends one line "<run_id>" to the file named by $BASIC_TASKS_COUNTER,
  so a test can count how often the task body ran.
- "gated": payload {"counter": PATH, "release": PATH}. Step "first" appends
  "first <run_id>" to PATH counter; step "gate" waits until the release file
  exists; step "after" appends "after <run_id>". A test cancels the run while it
  waits at the gate, then releases it: "after" must never be written.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import Retry, context, step, task

COUNTER_ENV = "BASIC_TASKS_COUNTER"
GATE_TIMEOUT = 60.0


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@step(name="add")
async def add(x: int, y: int) -> int:
    return x + y


@step(name="multiply")
async def multiply(x: int, y: int) -> int:
    return x * y


@step(name="describe")
async def describe(total: int, product: int) -> str:
    return f"sum={total} product={product}"


@task(id="three-steps", retry=Retry(max_attempts=1))
async def three_steps(payload: dict) -> dict:
    x = int(payload.get("x", 1))
    total = await add(x, 10)
    product = await multiply(total, 2)
    text = await describe(total, product)
    return {"sum": total, "product": product, "text": text}


@task(id="echo", retry=Retry(max_attempts=1))
async def echo(payload: object) -> object:
    return payload


@task(id="counted", retry=Retry(max_attempts=1))
async def counted(payload: object) -> dict:
    path = os.environ[COUNTER_ENV]
    _append(path, context.run_id)
    return {"counted": True, "payload": payload}


@step(name="first")
async def first(counter: str) -> str:
    _append(counter, f"first {context.run_id}")
    return "first done"


@step(name="gate")
async def gate(release: str) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATE_TIMEOUT
    while not Path(release).exists():
        if loop.time() > deadline:
            raise TimeoutError(f"release file {release} never appeared")
        await asyncio.sleep(0.05)
    return "released"


@step(name="after")
async def after(counter: str) -> str:
    _append(counter, f"after {context.run_id}")
    return "after done"


@task(id="gated", retry=Retry(max_attempts=1))
async def gated(payload: dict) -> dict:
    await first(payload["counter"])
    await gate(payload["release"])
    await after(payload["counter"])
    return {"finished": True}
