"""A worker may write only to attempts it was given (issue 14): each attempt
has an unguessable token, handed over in its assignment, and every heartbeat
and write of the attempt (Heartbeat, RecordStep, FinishAttempt,
UpdateRunMetadata, AppendRunOutput, each write of a BatchWrite) must carry it.
A wrong or missing token for the run's current attempt is PERMISSION_DENIED and
writes nothing (no row, no lease moved, no metadata changed); a write for an
attempt that is gone still answers which way it is gone."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
from google.protobuf.struct_pb2 import Struct
from harness import json_payload, seconds

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "token-task"
COMPLETED = wpb.ATTEMPT_OUTCOME_COMPLETED
FORGED = "A" * 32  # the shape of a token, not the attempt's
WRONG_TOKENS = (FORGED, "")


def retrying() -> wpb.TaskDefinition:
    """The task, retried at once after a failure."""
    quick = seconds(0.05)
    policy = cpb.RetryPolicy(max_attempts=3, factor=1.0, min_timeout=quick, max_timeout=quick)
    return wpb.TaskDefinition(task_id=TASK, retry=policy)


async def state(services: Any, run_id: str) -> dict[str, Any]:
    """Everything a write of the run could change: row counts of every table,
    the run row, its attempts, timers, steps and events."""
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = {
            "run": await conn.fetch("SELECT * FROM runs WHERE id = $1", run_id),
            "attempts": await conn.fetch("SELECT * FROM attempts WHERE run_id = $1 ORDER BY number", run_id),
            "timers": await conn.fetch("SELECT * FROM timers WHERE run_id = $1 ORDER BY kind", run_id),
            "steps": await conn.fetch("SELECT * FROM steps WHERE run_id = $1 ORDER BY position", run_id),
            "events": await conn.fetch("SELECT * FROM run_events WHERE run_id = $1 ORDER BY id", run_id),
        }
    finally:
        await conn.close()
    return {"counts": await services.counts(), **{k: [dict(r) for r in v] for k, v in rows.items()}}


def log_line(message: str) -> wpb.RunOutput:
    return wpb.RunOutput(log=cpb.LogLine(level="INFO", message=message, step_position=-1))


def writes(services: Any, run_id: str, attempt: int, token: str) -> dict[str, Any]:
    """Every kind of request a worker writes an attempt with, carrying `token`."""
    ns = services.namespace
    ref = {"namespace": ns, "run_id": run_id, "attempt": attempt, "attempt_token": token}
    metadata = Struct()
    metadata.update({"forged": True})
    return {
        "heartbeat": wpb.HeartbeatRequest(**ref),
        "record_step": wpb.RecordStepRequest(
            **ref,
            position=0,
            name="forged",
            status=cpb.STEP_STATUS_COMPLETED,
            output=json_payload("forged"),
            tries=1,
        ),
        "finish_completed": wpb.FinishAttemptRequest(**ref, outcome=COMPLETED, output=json_payload("forged")),
        "finish_failed": wpb.FinishAttemptRequest(
            **ref, outcome=wpb.ATTEMPT_OUTCOME_FAILED, error=cpb.ErrorInfo(type="Forged")
        ),
        "finish_suspended": wpb.FinishAttemptRequest(
            **ref,
            outcome=wpb.ATTEMPT_OUTCOME_SUSPENDED,
            wait=wpb.WaitSpec(position=0, name="wait.for_event", event=wpb.EventWait(name="go")),
        ),
        "update_metadata": wpb.UpdateRunMetadataRequest(**ref, metadata=metadata),
        "append_run_output": wpb.AppendRunOutputRequest(**ref, outputs=[log_line("forged")]),
    }


def call(services: Any, kind: str, request: Any) -> Any:
    method = {
        "heartbeat": services.history.Heartbeat,
        "record_step": services.history.RecordStep,
        "finish_completed": services.history.FinishAttempt,
        "finish_failed": services.history.FinishAttempt,
        "finish_suspended": services.history.FinishAttempt,
        "update_metadata": services.history.UpdateRunMetadata,
        "append_run_output": services.history.AppendRunOutput,
    }[kind]
    return method(request, timeout=5)


def batch(services: Any, requests: dict[str, Any]) -> wpb.BatchWriteRequest:
    """A BatchWrite of the batchable writes among `requests`."""
    items = [
        wpb.AttemptWrite(record_step=requests["record_step"]),
        wpb.AttemptWrite(append_run_output=requests["append_run_output"]),
        wpb.AttemptWrite(finish_attempt=requests["finish_completed"]),
    ]
    return wpb.BatchWriteRequest(namespace=services.namespace, writes=items)


def denied_message(run_id: str, attempt: int) -> str:
    return f"attempt {attempt} of run {run_id}: attempt_token does not match the token of the attempt's assignment"


async def test_each_attempt_gets_its_own_unguessable_token(services):
    await services.register(retrying())
    a = await services.start(TASK)
    b = await services.start(TASK)
    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_FAILED, error=cpb.ErrorInfo(type="Again"))
    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)
    (again,) = await services.claim(TASK)
    tokens = [a.attempt_token, b.attempt_token, again.attempt_token]
    assert all(len(t) >= 32 for t in tokens), tokens  # 192 random bits, URL-safe base64
    assert len(set(tokens)) == 3
    run = await services.get(a.run_id)
    assert a.attempt_token not in str(run) and again.attempt_token not in str(run)  # readers never see it


async def test_a_wrong_or_missing_token_is_refused_and_writes_nothing(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.record_step(a.run_id, 1, 0, "real")  # a recorded position: the idempotent path too
    for token in WRONG_TOKENS:
        for kind, request in writes(services, a.run_id, 1, token).items():
            if kind == "record_step":
                request.name = "real"  # the identical re-record must not pass without the token either
            before = await state(services, a.run_id)
            refused = await services.refused(call(services, kind, request))
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, (kind, token, refused)
            assert refused.details() == denied_message(a.run_id, 1), (kind, refused.details())
            assert await state(services, a.run_id) == before, (kind, token)
        before = await state(services, a.run_id)
        response = await services.history.BatchWrite(batch(services, writes(services, a.run_id, 1, token)))
        assert [(r.error.code, r.error.message, r.error.attempt_gone) for r in response.results] == [
            (
                grpc.StatusCode.PERMISSION_DENIED.value[0],
                denied_message(a.run_id, 1),
                wpb.ATTEMPT_GONE_UNSPECIFIED,
            )
        ] * 3
        assert await state(services, a.run_id) == before, token

    # The worker the attempt was given to goes on as if nothing happened.
    await services.record_step(a.run_id, 1, 1, "second", 2)
    assert (await services.finish(a.run_id, 1, COMPLETED, "real")).run_status == cpb.RUN_STATUS_COMPLETED
    run = await services.get(a.run_id)
    assert [s.name for s in run.steps] == ["real", "second"]
    assert run.output.data == b'"real"'


async def test_another_attempts_token_does_not_open_the_current_attempt(services):
    await services.register(retrying())
    a = await services.start(TASK)
    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_FAILED, error=cpb.ErrorInfo(type="Again"))
    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)
    (second,) = await services.claim(TASK)
    assert second.attempt == 2 and second.attempt_token != a.attempt_token
    before = await state(services, a.run_id)
    for kind, request in writes(services, a.run_id, 2, a.attempt_token).items():
        refused = await services.refused(call(services, kind, request))
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, (kind, refused)
        assert refused.details() == denied_message(a.run_id, 2)
    assert await state(services, a.run_id) == before
    assert (await services.finish(a.run_id, 2, COMPLETED, 1)).run_status == cpb.RUN_STATUS_COMPLETED


async def test_a_gone_attempt_is_told_gone_whatever_its_token(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.history.CancelRun(rpb.CancelRunRequest(namespace=services.namespace, run_id=a.run_id))
    before = await state(services, a.run_id)
    for token in (a.attempt_token, *WRONG_TOKENS):
        for kind, request in writes(services, a.run_id, 1, token).items():
            refused = await services.refused(call(services, kind, request))
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, (kind, token, refused)
            assert dict(refused.trailing_metadata() or ()).get("cairn-attempt-gone") == "canceled"
        response = await services.history.BatchWrite(batch(services, writes(services, a.run_id, 1, token)))
        assert [r.error.attempt_gone for r in response.results] == [wpb.ATTEMPT_GONE_CANCELED] * 3
    assert await state(services, a.run_id) == before


async def test_a_batch_refuses_only_the_writes_with_a_wrong_token(services):
    await services.register(TASK)
    a = await services.start(TASK)
    b = await services.start(TASK)
    good = writes(services, a.run_id, 1, a.attempt_token)["record_step"]
    forged = writes(services, b.run_id, 1, a.attempt_token)["record_step"]  # a's token on b's attempt
    before = await state(services, b.run_id)
    del before["counts"]  # a's step is written
    response = await services.history.BatchWrite(
        wpb.BatchWriteRequest(
            namespace=services.namespace,
            writes=[wpb.AttemptWrite(record_step=good), wpb.AttemptWrite(record_step=forged)],
        )
    )
    assert response.results[0].WhichOneof("result") == "record_step"
    assert response.results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    after = await state(services, b.run_id)
    del after["counts"]
    assert after == before
    assert [s.name for s in (await services.get(a.run_id)).steps] == ["forged"]
