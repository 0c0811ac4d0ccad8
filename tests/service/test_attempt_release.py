"""An attempt handed back by a worker shutting down (FinishAttempt RELEASED,
issue 15): the attempt ends "released", the run is queued again at once with
its failure count unchanged (no retry used up, even with max_attempts 1), the
next attempt starts with the journal recorded so far, the released attempt's
later writes are refused as ended, and a concurrency slot is freed. History
and matching in process (tests/service/conftest.py)."""

from __future__ import annotations

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "release-task"
RELEASED = wpb.ATTEMPT_OUTCOME_RELEASED
RPC_TIMEOUT = 5.0


def once_task(concurrency_limit: int = 0) -> wpb.TaskDefinition:
    """A task with one attempt only: a release must not use it up."""
    timeout = Duration(seconds=1)
    policy = cpb.RetryPolicy(max_attempts=1, factor=1.0, min_timeout=timeout, max_timeout=timeout)
    return wpb.TaskDefinition(task_id=TASK, retry=policy, concurrency_limit=concurrency_limit)


async def _row(services, query: str, *args):
    conn = await asyncpg.connect(services.database_url, timeout=RPC_TIMEOUT)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


async def test_a_released_attempt_queues_the_run_again_at_once(services):
    await services.register(once_task())
    first = await services.start(TASK, {"n": 1})
    await services.record_step(first.run_id, 1, 0, "one", 1)
    answer = await services.finish(first.run_id, 1, RELEASED)
    assert answer.run_status == cpb.RUN_STATUS_QUEUED and not answer.HasField("retry_delay")
    run = await services.get(first.run_id)
    assert run.status == cpb.RUN_STATUS_QUEUED
    assert [a.status for a in run.attempts] == [cpb.ATTEMPT_STATUS_RELEASED]
    row = await _row(services, "SELECT failure_count FROM runs WHERE id = $1::uuid", first.run_id)
    assert row["failure_count"] == 0
    timers = await _row(services, "SELECT count(*) AS n FROM timers WHERE run_id = $1::uuid", first.run_id)
    assert timers["n"] == 0  # no lease left to expire
    assert "requeued" in [e.type for e in run.events]
    (second,) = await services.claim(TASK)  # at once: no lease, no backoff
    assert (second.run_id, second.attempt) == (first.run_id, 2)
    assert [(s.position, s.name) for s in second.steps] == [(0, "one")]
    await services.finish(first.run_id, 2, wpb.ATTEMPT_OUTCOME_COMPLETED, {"done": True})
    run = await services.get(first.run_id)
    assert run.status == cpb.RUN_STATUS_COMPLETED
    assert [a.status for a in run.attempts] == [cpb.ATTEMPT_STATUS_RELEASED, cpb.ATTEMPT_STATUS_COMPLETED]


async def test_the_released_attempts_later_writes_are_refused_as_ended(services):
    await services.register(once_task())
    first = await services.start(TASK, {})
    await services.finish(first.run_id, 1, RELEASED)
    for call in (
        services.record_step(first.run_id, 1, 0, "late", 1),
        services.finish(first.run_id, 1, RELEASED),
        services.finish(first.run_id, 1, wpb.ATTEMPT_OUTCOME_COMPLETED, 1),
    ):
        refused = await services.refused(call)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert dict(refused.trailing_metadata())["cairn-attempt-gone"] == "ended"


async def test_a_release_frees_the_concurrency_slot(services):
    await services.register(once_task(concurrency_limit=1))
    first = await services.start(TASK, {"n": 1})
    await services.trigger(TASK, {"n": 2})
    assert await services.claim(TASK) == []  # the one slot is taken
    await services.finish(first.run_id, 1, RELEASED)
    claimed = await services.claim(TASK, max_attempts=2)
    assert len(claimed) == 1  # the slot is free again, and still one
