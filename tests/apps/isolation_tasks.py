"""Tasks of namespace b in the generated isolation test
(tests/cluster/test_isolation_generated.py), served by a real `cairn worker
isolation_tasks` process (cwd tests/apps) with a worker key of b. Each run's
payload is {"secret": S}; everything a task stores (output, step results, log
lines, metadata) carries S, so the test can look for it in every answer given
to namespace a's keys.

- "iso-hold": logs a line, records step "remember", sets the run's metadata,
  writes its run id, attempt and attempt token to ISOLATION_DIR/held-<run_id>.json
  (so the test can present b's real token with a's keys), then holds in step
  "hold" until the file ISOLATION_DIR/go-<run_id> exists.
- "iso-echo": logs a line and returns {"echo": S}.
- "iso-parked" (queue "iso-parked", which the test pauses so its runs stay
  queued): returns {"parked": S}.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from worker_sdk import Retry, context, step, task
from worker_sdk._attempt import current_attempt  # the attempt token is not public: tests only

PARKED_QUEUE = "iso-parked"
POLL = 0.05
HOLD_LIMIT = 300.0


def _dir() -> Path:
    return Path(os.environ["ISOLATION_DIR"])


@step(name="remember")
async def remember(secret: str) -> dict:
    return {"remembered": secret}


@step(name="hold")
async def hold(run_id: str) -> str:
    go = _dir() / f"go-{run_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HOLD_LIMIT
    while not go.exists() and loop.time() < deadline:
        await asyncio.sleep(POLL)
    return "released"


@task(id="iso-hold", retry=Retry(max_attempts=1))
async def hold_task(payload: dict) -> dict:
    secret = payload["secret"]
    context.logger.info("holding %s", secret)
    remembered = await remember(secret)
    await context.set_metadata({"secret": secret})
    attempt = current_attempt()
    assert attempt is not None
    held = {"run_id": attempt.run_id, "attempt": attempt.attempt, "attempt_token": attempt.attempt_token}
    path = _dir() / f"held-{attempt.run_id}.json"
    path.with_suffix(".tmp").write_text(json.dumps(held))
    path.with_suffix(".tmp").rename(path)
    released = await hold(attempt.run_id)
    return {"held": remembered, "released": released}


@task(id="iso-echo", retry=Retry(max_attempts=1))
async def echo(payload: dict) -> dict:
    context.logger.info("echoing %s", payload["secret"])
    return {"echo": payload["secret"]}


@task(id="iso-parked", queue=PARKED_QUEUE, retry=Retry(max_attempts=1))
async def parked(payload: dict) -> dict:
    return {"parked": payload["secret"]}
