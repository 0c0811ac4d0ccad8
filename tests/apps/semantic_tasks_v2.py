"""Version 2 of the task "sem-nondet" of tests/apps/semantic_tasks.py: the code
changed under a running run and now calls step "x" where "a" was recorded."""

from __future__ import annotations

from tests.apps.semantic_tasks import append
from worker_sdk import Retry, step, task


@step(name="x")
async def step_x() -> str:
    append("nondet_x")
    return "x-done"


@step(name="b")
async def step_b() -> str:
    append("nondet_b_v2")
    return "b-done"


@task(id="sem-nondet", retry=Retry(max_attempts=3, min_timeout=0.1))
async def nondet_v2(payload: dict) -> list:
    return [await step_x(), await step_b()]
