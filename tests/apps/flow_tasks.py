"""Tasks served by `cairn worker flow_tasks` in the queue flow-control tests (tests/cluster/
test_queue_dispatch_order.py, test_queue_rate_limits.py, test_queue_backpressure.py,
test_queue_management.py, test_worker_queues.py, test_service_replicas.py; flow_helpers.py
starts them with cwd=tests/apps, so this module imports as `flow_tasks`). Each task has a
queue of its own, so every test drives one queue without the others in the way.

- "flow-fair" on Queue("fair", concurrency_limit=1): returns its payload at once.
  With concurrency keys the limit of 1 applies per key.
- "flow-open" on queue "fair-open" (no limit): returns its payload at once.
- "flow-prio" on queue "prio": returns its payload at once.
- "flow-rate" on queue "rate": returns its payload at once (its rate limit is set
  by the test through QueueService).
- "flow-depth" on queue "bounded": returns its payload at once (max_depth set by the test).
- "flow-gated" on queue "pausable": waits (in step "gate") until the file
  payload["release"] exists, then returns; so a test can see runs executing.
- "flow-a" on queue "q-a" and "flow-b" on queue "q-b": return {"task": id, "run_id": id}.
- "flow-replica" on queue "replicas": returns {"payload": payload, "run_id": id};
  retried (3 attempts, short backoff), since an attempt whose frontend is killed
  under it ends crashed and is run again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from worker_sdk import Queue, Retry, context, step, task

GATE_TIMEOUT = 60.0
ONCE = Retry(max_attempts=1)

fair = Queue("fair", concurrency_limit=1)


@task(id="flow-fair", queue=fair, retry=ONCE)
async def flow_fair(payload: object) -> object:
    return payload


@task(id="flow-open", queue="fair-open", retry=ONCE)
async def flow_open(payload: object) -> object:
    return payload


@task(id="flow-prio", queue="prio", retry=ONCE)
async def flow_prio(payload: object) -> object:
    return payload


@task(id="flow-rate", queue="rate", retry=ONCE)
async def flow_rate(payload: object) -> object:
    return payload


@task(id="flow-depth", queue="bounded", retry=ONCE)
async def flow_depth(payload: object) -> object:
    return payload


@step(name="gate")
async def gate(release: str) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATE_TIMEOUT
    while not Path(release).exists():
        if loop.time() > deadline:
            raise TimeoutError(f"release file {release} never appeared")
        await asyncio.sleep(0.05)
    return "released"


@task(id="flow-gated", queue="pausable", retry=ONCE)
async def flow_gated(payload: dict) -> dict:
    await gate(payload["release"])
    return {"released": True, "n": payload.get("n")}


@task(id="flow-a", queue="q-a", retry=ONCE)
async def flow_a(payload: object) -> dict:
    return {"task": "flow-a", "run_id": context.run_id}


@task(id="flow-b", queue="q-b", retry=ONCE)
async def flow_b(payload: object) -> dict:
    return {"task": "flow-b", "run_id": context.run_id}


@task(id="flow-replica", queue="replicas", retry=Retry(max_attempts=3, min_timeout=0.1, max_timeout=0.5))
async def flow_replica(payload: object) -> dict:
    return {"payload": payload, "run_id": context.run_id}
