"""Matching through MatchingService only, with history in process behind it
(fixture ``services``, tests/service/conftest.py): registration, queue
settings, and polls that hand queued runs to registered workers within their
queue's pause and concurrency limit."""

from __future__ import annotations

import asyncio
import json

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "poll-task"
QUEUE = "poll-queue"


def queued_task(task_id: str = TASK, queue: str = QUEUE, concurrency_limit: int = 0) -> wpb.TaskDefinition:
    return wpb.TaskDefinition(task_id=task_id, queue=queue, concurrency_limit=concurrency_limit)


async def list_queues(services) -> dict[str, qpb.Queue]:
    response = await services.matching.ListQueues(qpb.ListQueuesRequest(namespace=services.namespace))
    return {q.name: q for q in response.queues}


async def test_register_worker_writes_its_tasks_queues_and_worker(services):
    before = await services.counts()
    await services.register(queued_task(concurrency_limit=2), "solo-task", slots=8)
    counts = await services.counts()
    assert (counts["tasks"] - before["tasks"], counts["workers"] - before["workers"]) == (2, 1)
    queues = await list_queues(services)
    assert sorted(queues) == [QUEUE, "solo-task"]  # a task without a queue has its own
    assert (queues[QUEUE].concurrency_limit, queues[QUEUE].managed) == (2, False)
    # A new version's declaration is applied (the same version's is refused:
    # test_worker_ownership.py).
    await services.register(queued_task(concurrency_limit=3), "solo-task", version="v2")
    assert (await list_queues(services))[QUEUE].concurrency_limit == 3
    assert (await services.counts())["workers"] == counts["workers"]


async def test_update_pause_resume_and_list_queues(services):
    await services.register(queued_task(concurrency_limit=2))
    period = Duration(seconds=1)
    updated = await services.matching.UpdateQueue(
        qpb.UpdateQueueRequest(
            namespace=services.namespace,
            name=QUEUE,
            concurrency_limit=5,
            rate_limit=qpb.RateLimit(limit=10, period=period),
            max_depth=100,
        )
    )
    q = updated.queue
    assert (q.concurrency_limit, q.rate_limit.limit, q.max_depth, q.managed, q.paused) == (
        5,
        10,
        100,
        True,
        False,
    )
    await services.register(queued_task(concurrency_limit=2))  # a managed queue ignores declarations
    assert (await list_queues(services))[QUEUE].concurrency_limit == 5

    await services.trigger(TASK)
    paused = await services.matching.PauseQueue(
        qpb.PauseQueueRequest(namespace=services.namespace, name=QUEUE)
    )
    assert (paused.queue.paused, paused.queue.depth, paused.queue.running) == (True, 1, 0)
    assert (await list_queues(services))[QUEUE].paused
    resumed = await services.matching.ResumeQueue(
        qpb.ResumeQueueRequest(namespace=services.namespace, name=QUEUE)
    )
    assert not resumed.queue.paused

    unknown = await services.refused(
        services.matching.PauseQueue(
            qpb.PauseQueueRequest(namespace=services.namespace, name="no-such-queue")
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


async def test_poll_hands_a_queued_run_to_a_registered_worker(services):
    await services.register(TASK)
    run_id = (await services.trigger(TASK, {"n": 7})).run.id
    (assignment,) = await services.poll()
    assert (assignment.run_id, assignment.attempt, assignment.task_id) == (run_id, 1, TASK)
    assert json.loads(assignment.payload.data) == {"n": 7}
    run = await services.get(run_id)
    assert (run.status, run.attempts[0].worker_id) == (cpb.RUN_STATUS_EXECUTING, "worker-1")
    assert await services.poll() == []  # handed out once


async def test_a_poll_takes_up_to_max_attempts(services):
    await services.register(TASK)
    run_ids = {(await services.trigger(TASK, i)).run.id for i in range(3)}
    first = await services.poll(max_attempts=2)
    assert len(first) == 2
    rest = await services.poll(max_attempts=2)
    assert {a.run_id for a in first + rest} == run_ids
    assert (await services.counts())["attempts"] == 3


async def test_a_waiting_poll_is_handed_a_run_triggered_meanwhile(services):
    await services.register(TASK)
    poll = asyncio.create_task(services.poll(wait=3.0))
    await asyncio.sleep(0)  # the poll is on its way
    run_id = (await services.trigger(TASK)).run.id
    (assignment,) = await poll
    assert assignment.run_id == run_id


async def test_a_poll_by_an_unregistered_worker_is_refused(services):
    await services.register(TASK)
    await services.trigger(TASK)
    refused = await services.refused(services.poll(TASK, worker_id="stranger"))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stranger" in refused.details()
    not_served = await services.refused(services.poll("other-task"))
    assert not_served.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await services.counts())["attempts"] == 0


async def test_a_paused_queue_is_not_claimed_until_resumed(services):
    await services.register(queued_task())
    await services.matching.PauseQueue(qpb.PauseQueueRequest(namespace=services.namespace, name=QUEUE))
    run_id = (await services.trigger(TASK)).run.id  # accepted while paused
    assert await services.poll(max_attempts=4) == []
    assert (await services.get(run_id)).status == cpb.RUN_STATUS_QUEUED
    await services.matching.ResumeQueue(qpb.ResumeQueueRequest(namespace=services.namespace, name=QUEUE))
    assert [a.run_id for a in await services.poll()] == [run_id]


async def test_a_concurrency_limit_of_1_hands_out_one_run_at_a_time(services):
    await services.register(queued_task(concurrency_limit=1))
    first, second = [(await services.trigger(TASK, i)).run.id for i in range(2)]
    (a,) = await services.poll(max_attempts=4)
    assert a.run_id == first
    assert await services.poll(max_attempts=4) == []  # the slot is taken
    assert (await list_queues(services))[QUEUE].running == 1
    await services.finish(a.run_id, a.attempt, wpb.ATTEMPT_OUTCOME_COMPLETED, "done")
    (b,) = await services.poll(max_attempts=4)  # the slot is free as soon as the attempt ends
    assert b.run_id == second
