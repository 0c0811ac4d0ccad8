"""Tasks served by `cairn worker tests.apps.batch_tasks` in tests/cluster/test_group_commit.py.

- "bw-three": payload {"x": N}; three steps (add, multiply, describe); returns
  {"sum": N + 10, "product": 2 * (N + 10), "text": "sum=.. product=.."}.
- "bw-barrier": payload {"group": NAME, "n": N}; one step, "arrive", whose body
  waits until N attempts of the group have reached it in this worker process,
  then all of them return at once. Their N step records are then made in the
  same turn of the worker's event loop, so the worker's group commit must send
  them in (at most) two calls: one already in flight, and one batch of the rest.
  Gives up after BARRIER_TIMEOUT (the run then fails).
"""

from __future__ import annotations

import asyncio

from worker_sdk import Retry, step, task

BARRIER_TIMEOUT = 20.0
_arrived: dict[str, int] = {}
_all_in: dict[str, asyncio.Event] = {}


@step(name="add")
async def add(x: int, y: int) -> int:
    return x + y


@step(name="multiply")
async def multiply(x: int, y: int) -> int:
    return x * y


@step(name="describe")
async def describe(total: int, product: int) -> str:
    return f"sum={total} product={product}"


@task(id="bw-three", retry=Retry(max_attempts=1))
async def three(payload: dict) -> dict:
    total = await add(int(payload["x"]), 10)
    product = await multiply(total, 2)
    return {"sum": total, "product": product, "text": await describe(total, product)}


@step(name="arrive")
async def arrive(group: str, n: int) -> int:
    _arrived[group] = _arrived.get(group, 0) + 1
    everyone = _all_in.setdefault(group, asyncio.Event())
    if _arrived[group] >= n:
        everyone.set()
    await asyncio.wait_for(everyone.wait(), BARRIER_TIMEOUT)
    return _arrived[group]


@task(id="bw-barrier", retry=Retry(max_attempts=1))
async def barrier(payload: dict) -> int:
    return await arrive(payload["group"], int(payload["n"]))
