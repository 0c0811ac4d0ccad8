"""A trigger's request id (TriggerRunRequest.request_id, issue 15): a trigger
sent again with the same one answers the run the first made, on the hot path
(one statement) and the general one, alone, in a coalesced TriggerRuns, at
the same moment and in a batch; per namespace; for 24 hours, after which the
id is forgotten; the same id with another task is ALREADY_EXISTS. History
and matching in process (tests/service/conftest.py)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import grpc
from harness import json_payload, seconds

from cairn.limits import REQUEST_ID_WINDOW_SECONDS
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "request-task"
OTHER = "request-other"
REQUEST = "6f1c1b1e-2d0a-4c55-9a8e-3f1f6f0b2a11"
RPC_TIMEOUT = 5.0


async def _sql(services, query: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(services.database_url, timeout=RPC_TIMEOUT)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_a_trigger_sent_again_answers_the_first_run(services):
    await services.register(TASK)
    first = await services.trigger(TASK, {"n": 1}, request_id=REQUEST)
    again = await services.trigger(TASK, {"n": 2}, request_id=REQUEST)
    assert (first.existing, again.existing) == (False, True)
    assert again.run.id == first.run.id
    assert json.loads(again.run.input.data) == {"n": 1}  # the run found carries its own input
    other = await services.trigger(TASK, {"n": 3}, request_id=REQUEST + "-b")
    plain = [await services.trigger(TASK, {"n": 4}) for _ in range(2)]  # no request id: two runs
    assert len({first.run.id, other.run.id, *(p.run.id for p in plain)}) == 4
    counts = await services.counts()
    assert (counts["runs"], counts["queue_entries"], counts["run_events"]) == (4, 4, 4)


async def test_the_general_path_answers_it_too(services):
    """Options with a timer (delay, ttl) or a concurrency key take the general
    transaction, which looks the request id up first."""
    await services.register(TASK)
    options = cpb.TriggerOptions(delay=seconds(60), concurrency_key="k")
    first = await services.trigger(TASK, {"n": 1}, request_id=REQUEST, options=options)
    again = await services.trigger(TASK, {"n": 2}, request_id=REQUEST, options=options)
    plain = await services.trigger(TASK, {"n": 3}, request_id=REQUEST)  # hot path, the id is taken
    assert (first.existing, again.existing, plain.existing) == (False, True, True)
    assert first.run.id == again.run.id == plain.run.id
    counts = await services.counts()
    assert (counts["runs"], counts["timers"]) == (1, 1)


async def test_the_same_moment_and_one_coalesced_call(services):
    """Two triggers with one request id at once (a retry racing the first) and
    twice in one TriggerRuns (the frontend's coalesced call): one run."""
    await services.register(TASK)
    racing = await asyncio.gather(*(services.trigger(TASK, {"n": i}, request_id=REQUEST) for i in range(4)))
    assert len({r.run.id for r in racing}) == 1
    assert sorted(r.existing for r in racing) == [False, True, True, True]
    item = rpb.TriggerRunRequest(
        namespace=services.namespace, task_id=TASK, payload=json_payload({}), request_id="coalesced-1"
    )
    response = await services.history.TriggerRuns(
        rpb.BatchTriggerRunsRequest(namespace=services.namespace, runs=[item, item]), timeout=RPC_TIMEOUT
    )
    one, two = (r.triggered for r in response.results)
    assert one.run.id == two.run.id and (one.existing, two.existing) == (False, True)
    assert (await services.counts())["runs"] == 2


async def test_a_batch_sent_again_answers_its_runs(services):
    await services.register(TASK)
    items = [
        rpb.TriggerRunRequest(task_id=TASK, payload=json_payload({"i": i}), request_id=f"batch-{i}")
        for i in range(3)
    ]
    request = rpb.BatchTriggerRunsRequest(namespace=services.namespace, runs=items)
    first = await services.history.BatchTriggerRuns(request, timeout=RPC_TIMEOUT)
    again = await services.history.BatchTriggerRuns(request, timeout=RPC_TIMEOUT)
    assert [r.run.id for r in first.runs] == [r.run.id for r in again.runs]
    assert [r.existing for r in again.runs] == [True, True, True]
    assert (await services.counts())["runs"] == 3


async def test_another_task_with_the_id_is_already_exists(services):
    await services.register(TASK, OTHER)
    await services.trigger(TASK, {}, request_id=REQUEST)
    before = await services.counts()
    refused = await services.refused(services.trigger(OTHER, {}, request_id=REQUEST))
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.details().startswith(f"request_id: {REQUEST!r} was sent with a trigger of task {TASK!r}")
    items = [rpb.TriggerRunRequest(task_id=OTHER, payload=json_payload({}), request_id=REQUEST)]
    refused = await services.refused(
        services.history.BatchTriggerRuns(
            rpb.BatchTriggerRunsRequest(namespace=services.namespace, runs=items), timeout=RPC_TIMEOUT
        )
    )
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.details().startswith("runs[0].request_id: "), refused.details()
    assert await services.counts() == before


async def test_per_namespace(services):
    await services.register(TASK)
    first = await services.trigger(TASK, {}, request_id=REQUEST)
    services.namespace = "team-b"
    await services.register(TASK)
    other = await services.trigger(TASK, {}, request_id=REQUEST)
    assert not other.existing and other.run.id != first.run.id


async def test_forgotten_after_the_window(services):
    """A request id that made a run more than 24 hours ago makes a new run (the
    old run no longer holds it); within the window it is still answered."""
    await services.register(TASK)
    old = await services.trigger(TASK, {}, request_id=REQUEST)
    await _sql(
        services,
        "UPDATE runs SET created_at = now() - make_interval(secs => $2) WHERE id = $1::uuid",
        old.run.id,
        REQUEST_ID_WINDOW_SECONDS - 60,
    )
    assert (await services.trigger(TASK, {}, request_id=REQUEST)).run.id == old.run.id
    await _sql(
        services,
        "UPDATE runs SET created_at = now() - make_interval(secs => $2) WHERE id = $1::uuid",
        old.run.id,
        REQUEST_ID_WINDOW_SECONDS + 60,
    )
    new = await services.trigger(TASK, {}, request_id=REQUEST)
    assert not new.existing and new.run.id != old.run.id
    rows = await _sql(services, "SELECT id::text, request_id FROM runs ORDER BY created_at")
    assert [(r["id"], r["request_id"]) for r in rows] == [(old.run.id, None), (new.run.id, REQUEST)]


async def test_a_started_run_is_answered_as_it_is_now(services):
    """A retry that comes after the run started gets the run as it is, not a
    new one: what a client whose first answer was lost needs."""
    await services.register(TASK)
    first = await services.trigger(TASK, {}, request_id=REQUEST)
    (assignment,) = await services.claim(TASK)
    await services.finish(assignment.run_id, 1, wpb.ATTEMPT_OUTCOME_COMPLETED, {"ok": True})
    again = await services.trigger(TASK, {}, request_id=REQUEST)
    assert again.existing and again.run.id == first.run.id
    assert again.run.status == cpb.RUN_STATUS_COMPLETED
