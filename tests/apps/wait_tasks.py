"""Tasks for the durable-wait tests (tests/cluster/test_durable_waits.py), served by real
`cairn worker tests.apps.wait_tasks` processes.

Side effects are lines "<event> <run_id> <attempt>" appended to
WAIT_TASKS_DIR/events.log, so a test can count how often a step body really ran.
A task holds itself at a point with a step that polls for a go-file (the test
creates it) and first touches a marker "held-<run_id>" (so the test knows the
run is executing there). The token task writes its token's id to
"token-<run_id>" for the test to complete.

Sleeper payload (tasks "wait-serial", on a queue with concurrency limit 1, and
"wait-sleeper", on its own unlimited queue): {"hold": bool, "sleep": seconds}:
step "before", then (hold) step "hold" until go-file "go-<run_id>", then
(sleep > 0) wait.for_(sleep), then step "after".
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from worker_sdk import Queue, Retry, WaitTimeoutError, context, step, task, wait

POLL = 0.02
HOLD_LIMIT = 60.0


def _dir() -> Path:
    d = os.environ.get("WAIT_TASKS_DIR")
    if not d:
        raise RuntimeError(
            "WAIT_TASKS_DIR is not set; tests/cluster/test_durable_waits.py passes it to workers"
        )
    return Path(d)


def emit(event: str) -> None:
    line = f"{event} {context.run_id} {context.attempt}\n".encode()
    fd = os.open(_dir() / "events.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@step(name="mark")
async def mark(what: str) -> str:
    emit(what)
    return what


@step(name="hold")
async def hold() -> str:
    """Touches held-<run_id>, then waits (heartbeating) for go-<run_id>."""
    emit("hold-start")
    (_dir() / f"held-{context.run_id}").write_text(str(os.getpid()))
    go = _dir() / f"go-{context.run_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD_LIMIT
    while not go.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"go-file {go} never appeared")
        await asyncio.sleep(POLL)
    return "released"


async def _sleeper(payload: dict) -> dict:
    await mark("before")
    if payload.get("hold"):
        await hold()
    if payload.get("sleep"):
        await wait.for_(payload["sleep"])
    await mark("after")
    return {"run": context.run_id, "attempt": context.attempt}


@task(id="wait-serial", queue=Queue("serial", concurrency_limit=1), retry=Retry(max_attempts=1))
async def serial(payload: dict) -> dict:
    return await _sleeper(payload)


@task(id="wait-sleeper", retry=Retry(max_attempts=3, min_timeout=0.2, max_timeout=1.0))
async def sleeper(payload: dict) -> dict:
    return await _sleeper(payload)


@task(id="wait-event", retry=Retry(max_attempts=1))
async def await_event(payload: dict) -> object:
    """payload {"name", "key"?, "timeout"?, "hold"?}: returns the event's payload,
    or "timed out"."""
    if payload.get("hold"):
        await hold()
    try:
        return await wait.for_event(payload["name"], key=payload.get("key"), timeout=payload.get("timeout"))
    except WaitTimeoutError:
        return "timed out"


@task(id="wait-token", retry=Retry(max_attempts=1))
async def await_token(payload: dict) -> object:
    """payload {"timeout"?}: creates a token, writes its id to token-<run_id>,
    waits on it; returns the completion payload, or "expired"."""
    token = await wait.create_token(timeout=payload.get("timeout"))
    (_dir() / f"token-{context.run_id}").write_text(token.id)
    try:
        return await wait.for_token(token)
    except WaitTimeoutError:
        return "expired"


@task(id="wait-quick", retry=Retry(max_attempts=1))
async def quick(payload: object) -> object:
    return payload
