"""History's run state machine, through HistoryService only, with history and
matching in process (fixture ``services``, tests/service/conftest.py): trigger,
claim and start, steps, finish, retries, fencing, cancel, waits and children.
Tasks are registered through MatchingService.RegisterWorker, as a worker would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.duration_pb2 import Duration
from harness import json_payload

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "service-task"
CHILD = "service-child"
COMPLETED, FAILED, SUSPENDED = (
    wpb.ATTEMPT_OUTCOME_COMPLETED,
    wpb.ATTEMPT_OUTCOME_FAILED,
    wpb.ATTEMPT_OUTCOME_SUSPENDED,
)


def retrying_task(
    task_id: str = TASK, max_attempts: int = 3, min_timeout: float = 0.05
) -> wpb.TaskDefinition:
    """A task retried after min_timeout seconds (factor 1), at most max_attempts times."""
    timeout = Duration()
    timeout.FromMilliseconds(round(min_timeout * 1000))
    policy = cpb.RetryPolicy(max_attempts=max_attempts, factor=1.0, min_timeout=timeout, max_timeout=timeout)
    return wpb.TaskDefinition(task_id=task_id, retry=policy)


def error(message: str, non_retryable: bool = False) -> cpb.ErrorInfo:
    return cpb.ErrorInfo(type="ValueError", message=message, stack_trace="", non_retryable=non_retryable)


def event_wait(position: int, name: str, key: str) -> wpb.WaitSpec:
    return wpb.WaitSpec(position=position, name="wait.for_event", event=wpb.EventWait(name=name, key=key))


# ---- trigger -------------------------------------------------------------------------


async def test_trigger_queues_the_run(services):
    await services.register(TASK)
    triggered = await services.trigger(TASK, {"order": 1})
    assert not triggered.existing
    run = await services.get(triggered.run.id)
    assert (run.status, run.task_id, run.queue, run.attempt_count) == (cpb.RUN_STATUS_QUEUED, TASK, TASK, 0)
    assert json.loads(run.input.data) == {"order": 1}
    assert [e.type for e in run.events] == ["triggered"]
    counts = await services.counts()
    assert (counts["runs"], counts["queue_entries"], counts["attempts"]) == (1, 1, 0)


async def test_idempotency_key_returns_the_existing_run(services):
    await services.register(TASK)
    first = await services.trigger(TASK, {"n": 1}, idempotency_key="order-1")
    again = await services.trigger(TASK, {"n": 2}, idempotency_key="order-1")
    other = await services.trigger(TASK, {"n": 3}, idempotency_key="order-2")
    assert (first.existing, again.existing, other.existing) == (False, True, False)
    assert again.run.id == first.run.id != other.run.id
    assert json.loads((await services.get(first.run.id)).input.data) == {"n": 1}
    counts = await services.counts()
    assert (counts["runs"], counts["queue_entries"]) == (2, 2)


async def test_trigger_of_an_unknown_task_is_not_found_and_writes_nothing(services):
    await services.register(TASK)
    before = await services.counts()
    refused = await services.refused(services.trigger("no-such-task", {}))
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-task" in refused.details()
    assert await services.counts() == before


# ---- start -----------------------------------------------------------------------------


async def test_claim_starts_attempt_1_with_a_lease(services):
    await services.register(TASK)
    run_id = (await services.trigger(TASK, {"x": 1})).run.id
    (assignment,) = await services.claim(TASK)
    assert (assignment.run_id, assignment.attempt, assignment.task_id) == (run_id, 1, TASK)
    assert json.loads(assignment.payload.data) == {"x": 1}
    assert assignment.lease_duration.ToTimedelta() == timedelta(seconds=10)
    assert list(assignment.steps) == []
    run = await services.get(run_id)
    assert (run.status, run.attempt_count) == (cpb.RUN_STATUS_EXECUTING, 1)
    assert [(a.number, a.status, a.worker_id) for a in run.attempts] == [
        (1, cpb.ATTEMPT_STATUS_EXECUTING, "worker-1")
    ]
    beat = await services.history.Heartbeat(
        wpb.HeartbeatRequest(
            namespace=services.namespace, run_id=run_id, attempt=1, attempt_token=assignment.attempt_token
        )
    )
    lease_left = beat.lease_expires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=8) < lease_left <= timedelta(seconds=10)
    assert await services.claim(TASK) == []  # its queue entry went with the start
    assert (await services.counts())["queue_entries"] == 0


async def test_claim_takes_at_most_max_attempts_highest_priority_first(services):
    await services.register(TASK, "other-task")
    low = (await services.trigger(TASK, 1)).run.id
    high = (await services.trigger(TASK, 2, options=cpb.TriggerOptions(priority=5))).run.id
    await services.trigger(TASK, 3)
    await services.trigger("other-task", 4)
    claimed = await services.claim(TASK, max_attempts=2)
    assert {a.run_id for a in claimed} == {high, low}  # then arrival order; results in no set order
    rest = await services.claim(TASK, "other-task", max_attempts=5)
    assert sorted(a.task_id for a in rest) == ["other-task", TASK]


async def test_start_with_a_stale_claim_starts_nothing(services):
    await services.register(TASK)
    run_id = (await services.trigger(TASK)).run.id
    stale = hpb.StartAttemptRequest(
        namespace=services.namespace,
        run_id=run_id,
        worker_id="worker-1",
        worker_version="v1",
        claim_token=str(uuid.uuid4()),
    )
    response = await services.history.StartAttempts(hpb.StartAttemptsRequest(starts=[stale]))
    assert [r.HasField("assignment") for r in response.results] == [False]
    assert (await services.get(run_id)).status == cpb.RUN_STATUS_QUEUED


# ---- steps and finish ------------------------------------------------------------------


async def test_a_step_is_recorded_once_per_position(services):
    await services.register(TASK)
    a = await services.start(TASK)
    first = await services.record_step(a.run_id, 1, 0, "fetch", {"v": 1})
    assert (first.step.position, first.step.name, first.step.attempt) == (0, "fetch", 1)
    again = await services.record_step(a.run_id, 1, 0, "fetch", {"v": 1})  # a lost answer, resent
    assert again.step == first.step
    other = await services.refused(services.record_step(a.run_id, 1, 0, "charge", {"v": 2}))
    assert other.code() == grpc.StatusCode.ALREADY_EXISTS
    await services.record_step(a.run_id, 1, 1, "charge", {"v": 2})
    run = await services.get(a.run_id)
    assert [(s.position, s.name, json.loads(s.output.data)) for s in run.steps] == [
        (0, "fetch", {"v": 1}),
        (1, "charge", {"v": 2}),
    ]


async def test_completed_attempt_completes_the_run_with_its_output(services):
    await services.register(TASK)
    a = await services.start(TASK, {"x": 1})
    finished = await services.finish(a.run_id, 1, COMPLETED, {"result": 42})
    assert finished.run_status == cpb.RUN_STATUS_COMPLETED
    run = await services.get(a.run_id)
    assert run.status == cpb.RUN_STATUS_COMPLETED
    assert json.loads(run.output.data) == {"result": 42}
    assert run.HasField("finished_at")
    assert [a.status for a in run.attempts] == [cpb.ATTEMPT_STATUS_COMPLETED]
    counts = await services.counts()
    assert (counts["timers"], counts["queue_entries"]) == (0, 0)


async def test_failure_retries_after_a_backoff_then_a_non_retryable_failure_fails_the_run(services):
    await services.register(retrying_task(min_timeout=0.05))
    a = await services.start(TASK)
    first = await services.finish(a.run_id, 1, FAILED, error=error("boom"))
    assert first.run_status == cpb.RUN_STATUS_RETRYING
    assert first.retry_delay.ToTimedelta() == timedelta(milliseconds=50)
    run = await services.get(a.run_id)
    assert run.status == cpb.RUN_STATUS_RETRYING and run.HasField("next_attempt_at")
    assert [(x.status, x.error.message) for x in run.attempts] == [(cpb.ATTEMPT_STATUS_FAILED, "boom")]
    assert run.attempts[0].retry_delay.ToTimedelta() == timedelta(milliseconds=50)

    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)  # history's timer fired
    (second,) = await services.claim(TASK)
    assert (second.run_id, second.attempt) == (a.run_id, 2)
    last = await services.finish(a.run_id, 2, FAILED, error=error("fatal", non_retryable=True))
    assert last.run_status == cpb.RUN_STATUS_FAILED
    run = await services.get(a.run_id)
    assert (run.status, run.error.message, run.attempt_count) == (cpb.RUN_STATUS_FAILED, "fatal", 2)
    assert [x.status for x in run.attempts] == [cpb.ATTEMPT_STATUS_FAILED, cpb.ATTEMPT_STATUS_FAILED]


async def test_a_stale_attempt_is_fenced_off(services):
    await services.register(retrying_task(min_timeout=0.01))
    a = await services.start(TASK)
    await services.finish(a.run_id, 1, FAILED, error=error("boom"))
    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)
    (second,) = await services.claim(TASK)
    assert second.attempt == 2
    before = await services.counts()
    stale_writes = [
        services.record_step(a.run_id, 1, 0, "late"),
        services.finish(a.run_id, 1, COMPLETED, "late"),
        services.history.Heartbeat(
            wpb.HeartbeatRequest(
                namespace=services.namespace, run_id=a.run_id, attempt=1, attempt_token=a.attempt_token
            )
        ),
    ]
    for write in stale_writes:
        assert (await services.refused(write)).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await services.counts() == before
    await services.record_step(a.run_id, 2, 0, "current")
    assert (await services.finish(a.run_id, 2, COMPLETED, "ok")).run_status == cpb.RUN_STATUS_COMPLETED


# ---- cancel -----------------------------------------------------------------------------


async def test_cancel_of_a_queued_run(services):
    await services.register(TASK)
    run_id = (await services.trigger(TASK)).run.id
    response = await services.history.CancelRun(
        rpb.CancelRunRequest(namespace=services.namespace, run_id=run_id, reason="not needed")
    )
    assert response.run.status == cpb.RUN_STATUS_CANCELED
    assert (await services.counts())["queue_entries"] == 0
    assert await services.claim(TASK) == []
    again = await services.refused(
        services.history.CancelRun(rpb.CancelRunRequest(namespace=services.namespace, run_id=run_id))
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION  # terminal statuses never change


async def test_cancel_of_an_executing_run_fences_its_attempt(services):
    await services.register(TASK)
    a = await services.start(TASK)
    response = await services.history.CancelRun(
        rpb.CancelRunRequest(namespace=services.namespace, run_id=a.run_id)
    )
    assert response.run.status == cpb.RUN_STATUS_CANCELED
    assert [x.status for x in response.run.attempts] == [cpb.ATTEMPT_STATUS_CANCELED]
    late = await services.refused(services.record_step(a.run_id, 1, 0, "late"))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await services.counts())["timers"] == 0  # no lease left to fire


# ---- waits -------------------------------------------------------------------------------


async def test_suspend_on_an_event_then_send_event_queues_the_run_with_the_event_recorded(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.record_step(a.run_id, 1, 0, "before")
    suspended = await services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(1, "approval", "u1"))
    assert suspended.run_status == cpb.RUN_STATUS_WAITING
    run = await services.get(a.run_id)
    assert (run.wait.kind, run.wait.event_name, run.wait.event_key) == ("event", "approval", "u1")
    assert [x.status for x in run.attempts] == [cpb.ATTEMPT_STATUS_SUSPENDED]

    sent = await services.history.SendEvent(
        wspb.SendEventRequest(
            namespace=services.namespace, name="approval", key="u1", payload=json_payload(True)
        )
    )
    assert list(sent.delivered_run_ids) == [a.run_id]
    run = await services.get(a.run_id)
    assert run.status == cpb.RUN_STATUS_QUEUED
    (resumed,) = await services.claim(TASK)
    assert resumed.attempt == 2
    assert [(s.position, s.name, json.loads(s.output.data)) for s in resumed.steps] == [
        (0, "before", None),
        (1, "wait.for_event", True),
    ]


async def test_an_event_sent_to_a_run_before_it_waits_is_kept_for_its_wait(services):
    await services.register(TASK)
    a = await services.start(TASK)
    sent = await services.history.SendEvent(
        wspb.SendEventRequest(
            namespace=services.namespace,
            run_id=a.run_id,
            name="approval",
            key="",
            payload=json_payload("early"),
        )
    )
    assert sent.buffered
    suspended = await services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(0, "approval", ""))
    assert suspended.run_status == cpb.RUN_STATUS_QUEUED  # resolved at once from the inbox
    (resumed,) = await services.claim(TASK)
    assert [json.loads(s.output.data) for s in resumed.steps] == ["early"]


async def test_a_child_run_completing_signals_its_parent(services):
    await services.register(TASK, CHILD)
    parent = await services.start(TASK)
    children = wpb.ChildrenWait(runs=[wpb.ChildRun(task_id=CHILD, payload=json_payload({"page": 1}))])
    wait = wpb.WaitSpec(position=0, name="child.trigger_and_wait", children=children)
    suspended = await services.finish(parent.run_id, 1, SUSPENDED, wait=wait)
    assert suspended.run_status == cpb.RUN_STATUS_WAITING
    (child_id,) = (await services.get(parent.run_id)).child_run_ids

    (child,) = await services.claim(CHILD)
    assert (child.run_id, child.parent_run_id) == (child_id, parent.run_id)
    await services.finish(child_id, 1, COMPLETED, {"rendered": 1})

    await services.wait_status(parent.run_id, cpb.RUN_STATUS_QUEUED)  # the signal timer fired
    (resumed,) = await services.claim(TASK)
    (step,) = resumed.steps
    assert step.output.encoding == "proto/cairn.v1.ChildResults"
    results = wpb.ChildResults.FromString(step.output.data).results
    assert [(r.run_id, r.status, json.loads(r.output.data)) for r in results] == [
        (child_id, cpb.RUN_STATUS_COMPLETED, {"rendered": 1})
    ]
