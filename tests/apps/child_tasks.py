"""Tasks of the child-run and replay cluster tests (tests/cluster/test_child_runs.py), served
by real `cairn worker tests.apps.child_tasks` processes.

Every side effect is a line appended to a file in the directory named by the
environment variable CHILD_TASKS_DIR (given to the worker by the test):
``<dir>/<name>.log`` gets one line per execution of a step or task body, so a
test counts how often each really ran, across attempts and worker processes.
Markers (files a task creates to say "I got here") and go-files (files the test
creates to let a task go on) live in the same directory; a task holds itself
at a point by polling for its go-file with asyncio.sleep, so heartbeats keep
flowing while it waits. A task decides "first time or not" from those files,
never from the attempt number.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from worker_sdk import ChildRunFailedError, NonRetryableError, Retry, context, step, task, wait

DIR_ENV = "CHILD_TASKS_DIR"
POLL = 0.02
# Quick task retries: a crashed attempt (its worker was killed) is retried soon
# after its lease expires, and the crashes of a test never exhaust the policy.
FAST_RETRY = Retry(max_attempts=10, min_timeout=0.1, max_timeout=0.5)


def side_dir() -> Path:
    d = os.environ.get(DIR_ENV)
    if not d:
        raise RuntimeError(f"{DIR_ENV} is not set; tests/cluster/test_child_runs.py passes it to workers")
    return Path(d)


def append(name: str, line: str = "ran") -> int:
    """Appends one line to <dir>/<name>.log (one short O_APPEND write, so lines of
    concurrent writers never interleave); returns how many lines it now has."""
    path = side_dir() / f"{name}.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(path.read_text(encoding="utf-8").splitlines())


def touch(name: str) -> None:
    (side_dir() / name).write_text(f"{os.getpid()}\n")


async def hold_until(name: str) -> None:
    """Waits, without blocking the event loop, until the go-file `name` exists."""
    path = side_dir() / name
    while not path.exists():
        await asyncio.sleep(POLL)


# ---- 1 and 6. a child that squares a number; fan-out and sequential waits ------------


@task(id="child-square", retry=FAST_RETRY)
async def child_square(payload: dict) -> int:
    append("square", f"{payload['i']} {context.run_id}")
    return payload["i"] * payload["i"]


@task(id="fanout-parent", retry=FAST_RETRY)
async def fanout_parent(payload: dict) -> dict:
    results = await child_square.batch_trigger_and_wait([{"i": i} for i in range(payload["n"])])
    return {
        "outputs": [r.unwrap() for r in results],
        "run_ids": [r.run_id for r in results],
        "statuses": [r.status for r in results],
    }


@task(id="sequential-parent", retry=FAST_RETRY)
async def sequential_parent(payload: dict) -> dict:
    first = await child_square.batch_trigger_and_wait([{"i": i} for i in payload["first"]])
    second = await child_square.trigger_and_wait({"i": payload["second"]})
    return {
        "first": [r.unwrap() for r in first],
        "first_run_ids": [r.run_id for r in first],
        "second": second,
    }


# ---- 2. a failing child --------------------------------------------------------------


@task(id="child-fails", retry=Retry(max_attempts=5, min_timeout=0.1))
async def child_fails(payload: dict) -> None:
    append("child_fails")
    raise NonRetryableError(f"child refuses {payload['what']}")


@task(id="parent-catches", retry=FAST_RETRY)
async def parent_catches(payload: dict) -> dict:
    try:
        value = await child_fails.trigger_and_wait({"what": payload["what"]})
    except ChildRunFailedError as err:
        return {
            "caught": True,
            "run_id": err.run_id,
            "task_id": err.task_id,
            "status": err.status,
            "error_type": err.error_type,
            "message": err.message,
            "text": str(err),
        }
    return {"caught": False, "value": value}


@task(id="parent-uncaught", retry=Retry(max_attempts=2, min_timeout=0.1))
async def parent_uncaught(payload: dict) -> None:
    append("parent_uncaught_body")
    await child_fails.trigger_and_wait({"what": payload["what"]})
    append("parent_uncaught_after_child")  # never reached


# ---- 3. cancelling a parent cancels its children --------------------------------------


@step(name="block-on-go-file")
async def block_on_go_file(i: int) -> str:
    append("blocker_step_start", f"{i} {context.run_id} {context.attempt}")
    touch(f"blocking-{context.run_id}")
    await hold_until("go-blockers")
    append("blocker_step_done", f"{i} {context.run_id}")
    return f"unblocked {i}"


@task(id="blocker-child", retry=FAST_RETRY)
async def blocker_child(payload: dict) -> str:
    i = payload["i"]
    if payload["mode"] == "event":
        got = await wait.for_event("never-comes", key=f"k{i}")
        value = f"event {got!r}"
    else:
        value = await block_on_go_file(i)
    append("blocker_done", f"{i} {context.run_id}")
    return value


@task(id="cancel-parent", retry=FAST_RETRY)
async def cancel_parent(payload: dict) -> list:
    results = await blocker_child.batch_trigger_and_wait(
        [{"i": i, "mode": "step" if i % 2 else "event"} for i in range(payload["n"])]
    )
    append("cancel_parent_after_children")
    return [r.status for r in results]


# ---- 4. fire and forget ------------------------------------------------------------------


@task(id="ff-child", retry=FAST_RETRY)
async def ff_child(payload: dict) -> dict:
    append("ff_child", context.run_id)
    return {"doubled": payload["x"] * 2, "parent": context.parent_run_id}


@task(id="ff-parent", retry=Retry(max_attempts=3, min_timeout=0.2))
async def ff_parent(payload: dict) -> str:
    handle = await ff_child.trigger({"x": payload["x"]})
    append("ff_parent_handles", handle.id)
    if append("ff_parent_after_trigger") == 1:
        raise RuntimeError("the parent fails once, after triggering its child")
    return handle.id


# ---- 5. replay: a step, a sleep, a child, an event, a final step -------------------------


@step(name="replay-first")
async def replay_first(tag: str) -> str:
    append("replay_first", f"{context.run_id} {context.attempt}")
    return f"first:{tag}"


@step(name="replay-child-work")
async def replay_child_work(x: int) -> int:
    append("replay_child_step", f"{context.run_id} {context.attempt}")
    return x * x


@step(name="replay-final")
async def replay_final(first: str, child: Any, event: Any) -> dict:
    append("replay_final", f"{context.run_id} {context.attempt}")
    return {"first": first, "child": child, "event": event}


@task(id="replay-child", retry=FAST_RETRY)
async def replay_child(payload: dict) -> dict:
    append("replay_child_body", f"{context.run_id} {context.attempt}")
    squared = await replay_child_work(payload["x"])
    touch(f"child-holding-{context.attempt}")
    await hold_until("go-child")
    return {"squared": squared}


@task(id="replay-parent", retry=FAST_RETRY)
async def replay_parent(payload: dict) -> dict:
    append("replay_parent_body", f"{context.run_id} {context.attempt}")
    first = await replay_first(payload["tag"])
    touch(f"after-first-{context.attempt}")
    await hold_until("go-after-first")
    await wait.for_(payload["sleep"])
    append("replay_after_sleep", f"{context.run_id} {context.attempt}")
    child = await replay_child.trigger_and_wait({"x": payload["x"]})
    event = await wait.for_event("approval")
    final = await replay_final(first, child, event)
    return final
