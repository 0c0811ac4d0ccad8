"""HistoryService.ReplayRun: a new run of the original's task with its payload
and options, linked by replay_of (on the run and in its 'triggered' event);
an unknown run is NOT_FOUND and nothing is written."""

from __future__ import annotations

import json

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "replay-task"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def seconds(value: int) -> Duration:
    return Duration(seconds=value)


def replay_request(services, run_id: str) -> rpb.ReplayRunRequest:
    return rpb.ReplayRunRequest(namespace=services.namespace, run_id=run_id)


def triggered_details(run: cpb.Run) -> dict:
    (event,) = [e for e in run.events if e.type == "triggered"]
    return json.loads(event.details_json)


async def test_a_replay_is_a_new_queued_run_with_the_payload_and_options_linked_to_the_original(services):
    await services.register(TASK)
    metadata = Struct()
    metadata.update({"customer": "c-1"})
    options = cpb.TriggerOptions(
        priority=7,
        tags=["a", "b"],
        metadata=metadata,
        concurrency_key="k1",
        ttl=seconds(3600),
        max_duration=seconds(90),
        delay=seconds(600),
    )
    original = (await services.trigger(TASK, {"order": 42}, options=options)).run
    assert original.status == cpb.RUN_STATUS_DELAYED

    replayed = (await services.history.ReplayRun(replay_request(services, original.id))).run
    assert replayed.id != original.id
    assert replayed.replay_of == original.id
    assert replayed.status == cpb.RUN_STATUS_QUEUED  # a replay has no delay

    got = await services.get(replayed.id)
    assert got.replay_of == original.id
    assert got.task_id == TASK
    assert json.loads(got.input.data) == {"order": 42} and got.input.encoding == "json/plain"
    assert got.priority == 7 and list(got.tags) == ["a", "b"]
    assert dict(got.metadata) == {"customer": "c-1"}
    assert got.concurrency_key == "k1"
    assert got.ttl.ToTimedelta().total_seconds() == 3600
    assert got.max_duration.ToTimedelta().total_seconds() == 90
    assert not got.idempotency_key and not got.parent_run_id
    assert triggered_details(got)["replay_of"] == original.id

    first = await services.get(original.id)
    assert first.replay_of == "" and triggered_details(first)["replay_of"] is None
    assert first.status == cpb.RUN_STATUS_DELAYED  # the original is untouched


async def test_a_finished_run_replays_and_the_replay_is_claimed_like_any_run(services):
    await services.register(TASK)
    a = await services.start(TASK, [1, 2], idempotency_key="once")
    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_COMPLETED, "done")
    replayed = (await services.history.ReplayRun(replay_request(services, a.run_id))).run
    assert replayed.replay_of == a.run_id and replayed.status == cpb.RUN_STATUS_QUEUED
    (b,) = await services.claim(TASK)
    assert b.run_id == replayed.id
    assert json.loads(b.payload.data) == [1, 2]
    again = (await services.history.ReplayRun(replay_request(services, a.run_id))).run
    assert again.id not in (a.run_id, replayed.id)  # each replay is a new run (no idempotency key)


async def test_replaying_an_unknown_run_is_not_found_and_writes_nothing(services):
    await services.register(TASK)
    await services.trigger(TASK, 1)
    before = await services.counts()
    exc = await services.refused(services.history.ReplayRun(replay_request(services, UNKNOWN)))
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert UNKNOWN in (exc.details() or "")
    bad = await services.refused(services.history.ReplayRun(replay_request(services, "nope")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in (bad.details() or "")
    assert await services.counts() == before


async def test_a_run_of_another_namespace_is_not_found(services):
    await services.register(TASK)
    run = (await services.trigger(TASK, 1)).run
    before = await services.counts()
    request = rpb.ReplayRunRequest(namespace="elsewhere", run_id=run.id)
    exc = await services.refused(services.history.ReplayRun(request))
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert await services.counts() == before
