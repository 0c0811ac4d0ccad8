"""Version 2 of the task "dash-nondet" of tests/apps/dashboard_tasks.py (served by
`cairn worker dashboard_tasks_v2`, cwd tests/apps): the code changed under a waiting
run and now calls step "x" where version 1 recorded "a", so the run's replay here
fails with a non-determinism error at position 0."""

from __future__ import annotations

from worker_sdk import Retry, step, task, wait

NONDET_EVENT = "dash-go"


@step(name="x")
async def step_x() -> str:
    return "x-done"


@step(name="b")
async def step_b() -> str:
    return "b-done"


@task(id="dash-nondet", retry=Retry(max_attempts=3, min_timeout=0.1))
async def nondet(payload: object) -> list:
    first = await step_x()
    await wait.for_event(NONDET_EVENT)
    return [first, await step_b()]
