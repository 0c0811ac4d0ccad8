"""W3C trace context on the run (issue 12 traces): history stores the trigger's
TriggerOptions.traceparent, or makes one, on every new run (triggers, batch
triggers, children, replays), shows its trace id as Run.trace_id and hands it to
the worker with each attempt (AttemptAssignment.traceparent)."""

from __future__ import annotations

import asyncpg

from cairn import tracing
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "traced-task"
CHILD = "traced-child"
GIVEN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
GIVEN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SUSPENDED = wpb.ATTEMPT_OUTCOME_SUSPENDED


def traced(traceparent: str = "", **fields) -> cpb.TriggerOptions:
    return cpb.TriggerOptions(traceparent=traceparent, **fields)


async def stored(services, run_id: str) -> str:
    conn = await asyncpg.connect(services.database_url)
    try:
        return await conn.fetchval("SELECT traceparent FROM runs WHERE id = $1::uuid", run_id)
    finally:
        await conn.close()


async def test_a_given_traceparent_is_stored_shown_as_trace_id_and_handed_to_the_worker(services):
    await services.register(TASK)
    triggered = (await services.trigger(TASK, 1, options=traced(GIVEN))).run
    assert triggered.trace_id == GIVEN_TRACE
    assert await stored(services, triggered.id) == GIVEN
    assert (await services.get(triggered.id)).trace_id == GIVEN_TRACE

    (assignment,) = await services.claim(TASK)
    assert assignment.run_id == triggered.id
    assert assignment.traceparent == GIVEN

    # A later attempt (after a failure) runs in the same trace.
    error = cpb.ErrorInfo(type="Boom", message="once")
    await services.finish(assignment.run_id, 1, wpb.ATTEMPT_OUTCOME_FAILED, error=error)
    await services.wait_status(triggered.id, cpb.RUN_STATUS_QUEUED, timeout=5)
    (again,) = await services.claim(TASK)
    assert (again.attempt, again.traceparent) == (2, GIVEN)


async def test_a_run_without_traceparent_gets_a_new_valid_one(services):
    await services.register(TASK)
    first = (await services.trigger(TASK, 1)).run
    second = (await services.trigger(TASK, 2)).run
    assert len(first.trace_id) == 32 and int(first.trace_id, 16)
    assert first.trace_id != second.trace_id
    value = await stored(services, first.id)
    assert tracing.is_valid(value) and tracing.trace_id_of(value) == first.trace_id
    (assignment,) = await services.claim(TASK)
    assert assignment.traceparent == value


async def test_the_general_trigger_path_stores_the_traceparent_too(services):
    await services.register(TASK)
    # A concurrency key takes create_run, not the one-statement TRIGGER.
    options = traced(GIVEN, concurrency_key="k")
    run = (await services.trigger(TASK, 1, options=options, idempotency_key="once")).run
    assert run.trace_id == GIVEN_TRACE
    again = (await services.trigger(TASK, 1, options=traced(), idempotency_key="once")).run
    assert (again.id, again.trace_id) == (run.id, GIVEN_TRACE)  # the first run, its trace


async def test_a_batch_stores_each_runs_own_trace(services):
    await services.register(TASK)
    request = rpb.BatchTriggerRunsRequest(
        namespace=services.namespace,
        runs=[
            rpb.TriggerRunRequest(namespace=services.namespace, task_id=TASK, options=traced(GIVEN)),
            rpb.TriggerRunRequest(namespace=services.namespace, task_id=TASK),
        ],
    )
    response = await services.history.BatchTriggerRuns(request)
    a, b = (r.run for r in response.runs)
    assert a.trace_id == GIVEN_TRACE
    assert len(b.trace_id) == 32 and b.trace_id != GIVEN_TRACE
    coalesced = await services.history.TriggerRuns(request)  # the frontend's coalesced triggers
    assert [r.WhichOneof("result") for r in coalesced.results] == ["triggered", "triggered"]
    c, d = (r.triggered.run for r in coalesced.results)
    assert c.trace_id == GIVEN_TRACE
    assert len(d.trace_id) == 32 and d.trace_id not in (GIVEN_TRACE, b.trace_id)


async def test_children_take_the_trace_context_they_are_triggered_with(services):
    await services.register(TASK, CHILD)
    parent = await services.start(TASK, options=traced(GIVEN))
    in_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
    children = wpb.ChildrenWait(
        runs=[
            wpb.ChildRun(task_id=CHILD, options=traced(in_trace)),
            wpb.ChildRun(task_id=CHILD),
        ]
    )
    wait = wpb.WaitSpec(position=0, name="children", children=children)
    await services.finish(parent.run_id, 1, SUSPENDED, wait=wait)
    joined, alone = (await services.get(parent.run_id)).child_run_ids
    assert (await services.get(joined)).trace_id == GIVEN_TRACE
    assert await stored(services, joined) == in_trace
    assert (await services.get(alone)).trace_id not in ("", GIVEN_TRACE)


async def test_a_replay_starts_a_new_trace(services):
    await services.register(TASK)
    original = (await services.trigger(TASK, 1, options=traced(GIVEN))).run
    request = rpb.ReplayRunRequest(namespace=services.namespace, run_id=original.id)
    replayed = (await services.history.ReplayRun(request)).run
    assert replayed.replay_of == original.id
    assert len(replayed.trace_id) == 32 and replayed.trace_id != GIVEN_TRACE
