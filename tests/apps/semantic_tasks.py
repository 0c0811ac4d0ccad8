"""Tasks of the semantics cluster tests (tests/cluster/test_retries_and_replay.py).

Every side effect is a line appended to a file in the directory named by the
environment variable SEMANTICS_DIR (given to the worker by the test), so a test
counts how often a step body or a task body really ran, across attempts and
worker processes. A task decides "first time or not" from those files, never
from the attempt number, so what it does depends only on what happened before.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from worker_sdk import NonRetryableError, Retry, StepFailedError, step, task

DIR_ENV = "SEMANTICS_DIR"


def side_dir() -> Path:
    return Path(os.environ[DIR_ENV])


def append(name: str, line: str = "ran") -> int:
    """Appends one line to <SEMANTICS_DIR>/<name>.log; returns how many lines it
    now has (this one included)."""
    path = side_dir() / f"{name}.log"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return len(path.read_text(encoding="utf-8").splitlines())


async def wait_for_file(name: str, timeout: float = 60.0) -> None:
    """Holds the calling step until the test creates <SEMANTICS_DIR>/<name>."""
    path = side_dir() / name
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.05)


# ---- 1. a step retried in place -----------------------------------------------------


@step(name="flaky", retry=Retry(max_attempts=3, min_timeout=0.1))
async def flaky() -> str:
    n = append("flaky")
    if n < 3:
        raise RuntimeError(f"flaky try {n} fails")
    return f"ok after {n} tries"


@task(id="sem-step-retry", retry=Retry(max_attempts=3, min_timeout=0.1))
async def step_retry_task(payload: dict) -> str:
    append("step_retry_body")
    return await flaky()


# ---- 2. a task retried after its backoff ----------------------------------------------


@step(name="before-failure")
async def before_failure() -> str:
    append("before_failure")
    return "recorded before the failure"


@task(id="sem-task-retry", retry=Retry(max_attempts=3, min_timeout=1.0, factor=2))
async def task_retry_body_fails_once(payload: dict) -> dict:
    first = await before_failure()
    n = append("task_retry_body")
    if n == 1:
        raise RuntimeError("task body fails in its first attempt")
    return {"first": first, "body_runs": n}


# ---- 3. backoff growth -----------------------------------------------------------------


@task(id="sem-backoff", retry=Retry(max_attempts=3, min_timeout=0.2, factor=3))
async def always_fails(payload: dict) -> None:
    n = append("always_fails")
    raise ValueError(f"always fails (run {n})")


# ---- 4. non-retryable errors ---------------------------------------------------------


@task(id="sem-nonretryable", retry=Retry(max_attempts=5, min_timeout=0.1))
async def raises_non_retryable(payload: dict) -> None:
    append("nonretryable")
    raise NonRetryableError("retrying cannot help")


@task(id="sem-nonretryable-type", retry=Retry(max_attempts=5, min_timeout=0.1, non_retryable=(KeyError,)))
async def raises_listed_type(payload: dict) -> None:
    append("nonretryable_type")
    raise KeyError("no-such-key")


@step(name="step-non-retryable", retry=Retry(max_attempts=5, min_timeout=0.1))
async def step_non_retryable() -> None:
    append("step_nonretryable")
    raise NonRetryableError("step says stop")


@task(id="sem-nonretryable-step", retry=Retry(max_attempts=5, min_timeout=0.1))
async def calls_non_retryable_step(payload: dict) -> None:
    append("nonretryable_step_body")
    await step_non_retryable()


@step(name="step-listed-type", retry=Retry(max_attempts=5, min_timeout=0.1, non_retryable=(KeyError,)))
async def step_listed_type() -> None:
    append("step_listed_type")
    raise KeyError("step-missing-key")


@task(id="sem-nonretryable-step-type", retry=Retry(max_attempts=5, min_timeout=0.1))
async def calls_listed_type_step(payload: dict) -> None:
    append("listed_type_step_body")
    await step_listed_type()


# ---- 5. non-determinism (v1; tests/apps/semantic_tasks_v2.py has v2) ------------------


@step(name="a")
async def step_a() -> str:
    append("nondet_a")
    return "a-done"


@step(name="b")
async def step_b() -> str:
    append("nondet_b")
    await wait_for_file("nondet-go")  # holds the run here; the test kills the worker
    return "b-done"


@task(id="sem-nondet", retry=Retry(max_attempts=3, min_timeout=0.1))
async def nondet_v1(payload: dict) -> list:
    return [await step_a(), await step_b()]


# ---- 6. replay returns the recorded value ---------------------------------------------


@step(name="mint")
async def mint() -> str:
    value = str(uuid.uuid4())
    append("mint", value)
    return value


@task(id="sem-replay-value", retry=Retry(max_attempts=3, min_timeout=0.1))
async def replay_value(payload: dict) -> str:
    value = await mint()
    append("replay_value_seen", value)
    if append("replay_value_body") == 1:
        raise RuntimeError("first attempt fails after the step")
    return value


# ---- 7. a failed step is replayed as a failure ----------------------------------------


@step(name="doomed", retry=Retry(max_attempts=1))
async def doomed() -> None:
    append("doomed")
    raise ValueError("doomed for good")


@task(id="sem-failed-step-replay", retry=Retry(max_attempts=3, min_timeout=0.1))
async def failed_step_replay(payload: dict) -> str:
    try:
        await doomed()
        result = "not handled"
    except StepFailedError as exc:
        result = "handled"
        append("doomed_handled", f"{exc.step_name}|{exc.error_type}|{exc.message}")
    if append("failed_step_body") == 1:
        raise RuntimeError("first attempt fails after handling the step failure")
    return result
