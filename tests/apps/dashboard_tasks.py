"""Tasks of the dashboard's browser tests (tests/browser/), served by a real
`cairn worker dashboard_tasks` process (cwd tests/apps). Each task makes one thing
the pages must show; nothing here reads files, so a task's outcome depends only on
its payload and attempt number.

- "dash-three-steps": three steps ("fetch", "transform", "store") that each log a
  line and return a JSON result; the run's output names them.
- "dash-live" (queue "dash-live", which the runs-list test pauses so its run stays
  queued, then resumes): one quick step.
- "dash-flaky": the first attempt fails with an exception raised two calls deep (a
  stack trace naming `explode`), the second completes.
- "dash-token": creates a wait token, logs its id, and returns what it is completed
  with.
- "dash-sleep": sleeps an hour (wait.for_(3600)), to be canceled.
- "dash-noop" (queue "dash-pausable", which the queues test pauses and resumes; the
  schedules test schedules it): returns its payload.
- "dash-nondet": version 1 records step "a", waits for event "dash-go", then step
  "b"; version 2 (tests/apps/dashboard_tasks_v2.py) calls "x" where "a" was recorded,
  so a run recorded here and resumed there fails with a non-determinism error at
  position 0.
"""

from __future__ import annotations

from worker_sdk import Queue, Retry, context, step, task, wait

LIVE_QUEUE = "dash-live"
PAUSABLE_QUEUE = "dash-pausable"
NONDET_EVENT = "dash-go"


# ---- three steps, with logs and results ------------------------------------------------


@step(name="fetch")
async def fetch(item: str) -> dict:
    context.logger.info("fetching %s", item)
    return {"item": item, "rows": [1, 2, 3]}


@step(name="transform")
async def transform(fetched: dict) -> dict:
    context.logger.info("transforming %d rows", len(fetched["rows"]))
    return {"item": fetched["item"], "total": sum(fetched["rows"])}


@step(name="store")
async def store(summary: dict) -> str:
    context.logger.warning("storing %s", summary["item"])
    return f"stored {summary['item']} total={summary['total']}"


@task(id="dash-three-steps", retry=Retry(max_attempts=1))
async def three_steps(payload: dict) -> dict:
    item = payload.get("item", "widgets")
    context.logger.info("three steps for %s", item)
    stored = await store(await transform(await fetch(item)))
    return {"stored": stored, "steps": ["fetch", "transform", "store"]}


@step(name="live-step")
async def live_step() -> str:
    return "live"


@task(id="dash-live", queue=Queue(LIVE_QUEUE), retry=Retry(max_attempts=1))
async def live(payload: object) -> str:
    return await live_step()


# ---- a failed attempt, then a completed one ---------------------------------------------


class FlakyServiceError(RuntimeError):
    """What the first attempt of dash-flaky raises."""


def explode(attempt: int) -> None:
    raise FlakyServiceError(f"the service refused attempt {attempt}")


def call_service(attempt: int) -> None:
    if attempt == 1:
        explode(attempt)


@step(name="prepare")
async def prepare() -> str:
    return "prepared"


@task(id="dash-flaky", retry=Retry(max_attempts=2, min_timeout=0.1, max_timeout=0.2))
async def flaky(payload: object) -> str:
    await prepare()
    context.logger.info("attempt %d calls the service", context.attempt)
    call_service(context.attempt)
    return f"completed on attempt {context.attempt}"


# ---- waits: a token, a long sleep ---------------------------------------------------------


@task(id="dash-token", retry=Retry(max_attempts=1))
async def token_task(payload: object) -> object:
    token = await wait.create_token()
    context.logger.info("waiting on token %s", token.id)
    value = await wait.for_token(token)
    return {"approved_with": value}


@task(id="dash-sleep", retry=Retry(max_attempts=1))
async def sleeper(payload: object) -> str:
    context.logger.info("sleeping for an hour")
    await wait.for_(3600)
    return "woke up"


@task(id="dash-noop", queue=Queue(PAUSABLE_QUEUE), retry=Retry(max_attempts=1))
async def noop(payload: object) -> object:
    return payload


# ---- non-determinism: version 1 ------------------------------------------------------------


@step(name="a")
async def step_a() -> str:
    return "a-done"


@step(name="b")
async def step_b() -> str:
    return "b-done"


@task(id="dash-nondet", retry=Retry(max_attempts=3, min_timeout=0.1))
async def nondet(payload: object) -> list:
    first = await step_a()
    await wait.for_event(NONDET_EVENT)
    return [first, await step_b()]
