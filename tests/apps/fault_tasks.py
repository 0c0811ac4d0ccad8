"""Tasks for the fault-injection tests (tests/cluster/test_crash_recovery.py,
test_nats_outage.py, test_lease_fencing.py and test_dev_restart.py; helpers in
fault_helpers.py), served by real `cairn worker tests.apps.fault_tasks` processes.

Every side effect is a line appended to FAULT_TASKS_DIR/events.log:
``"<event> <run_id> <attempt> <pid>"``. Tests count these lines per run, per
attempt and per process. Markers (files a task creates to say "I got here") and
go-files (files the test creates to let a task go on) live in the same
directory; a task holds itself at a point by polling for its go-file with
asyncio.sleep, so heartbeats keep flowing while it waits.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import Retry, context, step, task

POLL = 0.02


def _dir() -> Path:
    d = os.environ.get("FAULT_TASKS_DIR")
    if not d:
        raise RuntimeError(
            "FAULT_TASKS_DIR is not set; the fault-injection tests (tests/cluster/) pass it to workers"
        )
    return Path(d)


def emit(event: str) -> None:
    """Appends one side-effect line. One short write on an O_APPEND file, so lines
    of concurrent writers (several slots, several workers) never interleave."""
    line = f"{event} {context.run_id} {context.attempt} {os.getpid()}\n".encode()
    fd = os.open(_dir() / "events.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def touch(name: str) -> None:
    (_dir() / name).write_text(f"{os.getpid()}\n")


async def hold_until(name: str) -> None:
    """Waits (without blocking the event loop) until the go-file `name` exists."""
    path = _dir() / name
    while not path.exists():
        await asyncio.sleep(POLL)


# ---- 1. three steps; the worker is killed while step 3 holds ----------------------


@step(name="add-one")
async def add_one(x: int) -> int:
    emit("s1-done")
    return x + 1


@step(name="double")
async def double(x: int) -> int:
    emit("s2-done")
    return x * 2


@step(name="add-three")
async def add_three(x: int) -> int:
    emit("s3-start")
    touch(f"s3-started-{context.run_id}-{context.attempt}")
    await hold_until(f"go-s3-{context.run_id}")
    emit("s3-done")
    return x + 3


@task(id="fault-three-steps", retry=Retry(max_attempts=3, min_timeout=0.2, max_timeout=1.0))
async def three_steps(payload: dict) -> dict:
    a = await add_one(payload["x"])
    b = await double(a)
    c = await add_three(b)
    emit("task-done")
    return {"result": c, "attempt": context.attempt}


# ---- 2. two steps with a delay, many runs, services killed under them -------------


@step(name="first")
async def first(n: int, delay: float) -> int:
    await asyncio.sleep(delay)
    emit("first-done")
    return n * 10


@step(name="second")
async def second(n: int, delay: float) -> int:
    await asyncio.sleep(delay)
    emit("second-done")
    return n + 1


@task(id="fault-two-steps", retry=Retry(max_attempts=10, min_timeout=0.2, max_timeout=1.0))
async def two_steps(payload: dict) -> dict:
    a = await first(payload["n"], payload["delay"])
    b = await second(a, payload["delay"])
    emit("task-done")
    return {"n": payload["n"], "value": b}


# ---- 3. a quick task, to measure trigger-to-start latency -------------------------


@task(id="fault-quick", retry=Retry(max_attempts=3, min_timeout=0.2))
async def quick(payload: dict) -> dict:
    emit("quick-start")
    return {"i": payload["i"]}


# ---- 4. fencing: attempt 1 holds inside its step; the test freezes its worker -----


@step(name="hold")
async def hold_step(tag: str) -> dict:
    emit("hold-start")
    if context.attempt == 1:
        touch(f"held-{context.run_id}")
        await hold_until(f"go-hold-{context.run_id}")
    emit("hold-done")
    return {"tag": tag, "attempt": context.attempt, "pid": os.getpid()}


@task(id="fault-fenced", retry=Retry(max_attempts=3, min_timeout=0.2, max_timeout=1.0))
async def fenced(payload: dict) -> dict:
    inner = await hold_step(payload["tag"])
    emit("task-done")
    return {"step": inner, "attempt": context.attempt, "pid": os.getpid()}


# ---- 5. `cairn dev` restart --------------------------------------------------------


@task(id="fault-echo", retry=Retry(max_attempts=3, min_timeout=0.2))
async def echo(payload: dict) -> dict:
    emit("echo")
    return {"echo": payload}
