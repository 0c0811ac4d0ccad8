"""The tasks the benchmark runs on Cairn (served by `cairn worker bench.tasks`).

Every step is trivial (it returns a small value at once), so the figures measure
what Cairn costs per run and per step, not the work. The same shapes are
written for the peers in bench/peers/dbos_bench.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from worker_sdk import Queue, step, task

LIMITED_QUEUE = Queue("bench-limited", concurrency_limit=5)


@step(name="noop")
async def noop(i: int) -> int:
    return i


@task(id="one_step")
async def one_step(payload: Any) -> int:
    """a, f: a run of one trivial step."""
    return await noop(0)


@task(id="ten_steps")
async def ten_steps(payload: Any) -> int:
    """b: a run of ten trivial steps, one after the other."""
    total = 0
    for i in range(10):
        total += await noop(i)
    return total


@task(id="many_steps")
async def many_steps(payload: dict[str, int]) -> dict[str, float]:
    """d: payload["n"] trivial steps one after the other; returns the body's own
    timing (first step started to last step recorded), so the figure leaves out
    dispatch and finish."""
    n = int(payload["n"])
    t0 = time.time()
    for i in range(n):
        await noop(i)
    return {"steps": n, "body_start": t0, "body_end": time.time()}


@task(id="timed_steps")
async def timed_steps(payload: dict[str, int]) -> dict[str, Any]:
    """w: payload["n"] trivial steps one after the other, each after
    payload["gap_ms"] (default 0) of waiting, as a run that awaits I/O between
    its steps would; returns each step's microseconds (the call to the step's
    record acknowledged, the wait not included) and the body's own start and end."""
    n = int(payload["n"])
    gap = float(payload.get("gap_ms", 0)) / 1000
    t0 = time.time()
    step_us = []
    for i in range(n):
        if gap:
            await asyncio.sleep(gap)
        t = time.perf_counter()
        await noop(i)
        step_us.append(round((time.perf_counter() - t) * 1e6))
    return {"body_start": t0, "body_end": time.time(), "step_us": step_us}


@task(id="latency")
async def latency(payload: Any) -> float:
    """c: returns the wall clock at the start of its body (same machine as the
    trigger, so start - trigger time is the trigger-to-start latency)."""
    return time.time()


@task(id="limited", queue=LIMITED_QUEUE)
async def limited(payload: dict[str, float]) -> dict[str, float]:
    """e: on a queue of concurrency limit 5; sleeps payload["sleep"] seconds and a
    trivial step, and returns when its body started and ended, from which the
    harness computes the most runs seen executing at once."""
    start = time.time()
    await noop(0)
    await asyncio.sleep(float(payload.get("sleep", 0.01)))
    return {"start": start, "end": time.time()}


@task(id="drain", queue=Queue("bench-drain"))
async def drain(payload: Any) -> int:
    """f: one_step on its own queue, which the harness pauses while it queues the runs."""
    return await noop(0)
