"""The worker protocol's rules that only history can enforce (issue 11),
through HistoryService only: journal positions at RecordStep and at a
suspension (the data-loss case first), what a step record must carry, the
errors of failed tries, a sleep as a wait, child results as ChildResults,
the server's error types (cairn.*) and why an attempt's write is refused
(trailing metadata "cairn-attempt-gone", WriteError.attempt_gone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from harness import json_payload, seconds

from cairn import error_types
from cairn.limits import MAX_STEPS_IN_FLIGHT, MAX_TRY_ERRORS
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "protocol-task"
CHILD = "protocol-child"
COMPLETED, FAILED, SUSPENDED = (
    wpb.ATTEMPT_OUTCOME_COMPLETED,
    wpb.ATTEMPT_OUTCOME_FAILED,
    wpb.ATTEMPT_OUTCOME_SUSPENDED,
)


def retrying_task(max_attempts: int = 3, min_timeout: float = 0.05) -> wpb.TaskDefinition:
    """TASK, retried after min_timeout seconds (factor 1), at most max_attempts times."""
    timeout = Duration()
    timeout.FromMilliseconds(round(min_timeout * 1000))
    policy = cpb.RetryPolicy(max_attempts=max_attempts, factor=1.0, min_timeout=timeout, max_timeout=timeout)
    return wpb.TaskDefinition(task_id=TASK, retry=policy)


def error(message: str, non_retryable: bool = False) -> cpb.ErrorInfo:
    return cpb.ErrorInfo(type="ValueError", message=message, non_retryable=non_retryable)


def event_wait(position: int, name: str, key: str) -> wpb.WaitSpec:
    return wpb.WaitSpec(position=position, name="wait.for_event", event=wpb.EventWait(name=name, key=key))


def step_request(services: Any, run_id: str, position: int, name: str = "step", **fields: Any) -> Any:
    """A RecordStepRequest of attempt 1 with its token: by default a completed step with output JSON null."""
    attempt = fields.pop("attempt", 1)
    fields.setdefault("attempt_token", services.token(run_id, attempt))
    request = wpb.RecordStepRequest(
        namespace=services.namespace,
        run_id=run_id,
        attempt=attempt,
        position=position,
        name=name,
        status=fields.pop("status", cpb.STEP_STATUS_COMPLETED),
        tries=fields.pop("tries", 1),
        **fields,
    )
    if request.status == cpb.STEP_STATUS_COMPLETED and not request.HasField("output"):
        request.output.CopyFrom(json_payload(None))
    return request


def timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def gone(exc: grpc.aio.AioRpcError) -> str | None:
    """The refusal's "cairn-attempt-gone" trailing metadata."""
    return dict(exc.trailing_metadata() or ()).get("cairn-attempt-gone")


async def record(services: Any, request: Any) -> Any:
    return await services.history.RecordStep(request)


async def heartbeat(services: Any, run_id: str, attempt: int) -> Any:
    return await services.history.Heartbeat(
        wpb.HeartbeatRequest(
            namespace=services.namespace,
            run_id=run_id,
            attempt=attempt,
            attempt_token=services.token(run_id, attempt),
        )
    )


async def send_event(services: Any, name: str, value: Any) -> wspb.SendEventResponse:
    request = wspb.SendEventRequest(
        namespace=services.namespace, name=name, key="", payload=json_payload(value)
    )
    response: wspb.SendEventResponse = await services.history.SendEvent(request)
    return response


# ---- journal positions (finding 1: the data-loss case first) ----------------------------


async def test_a_suspension_at_a_recorded_position_is_refused_and_writes_nothing(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.record_step(a.run_id, 1, 0, "charge", {"charged": 10})
    before = await services.counts()

    refused = await services.refused(
        services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(0, "approval", ""))
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wait.position 0 is already recorded (as 'charge' by attempt 1)" in refused.details()
    assert await services.counts() == before

    # The event finds no waiting run, and the journal keeps the step's value.
    assert list((await send_event(services, "approval", {"ok": True})).delivered_run_ids) == []
    run = await services.get(a.run_id)
    assert (run.status, run.HasField("wait")) == (cpb.RUN_STATUS_EXECUTING, False)
    assert [(s.position, s.name, json.loads(s.output.data)) for s in run.steps] == [
        (0, "charge", {"charged": 10})
    ]
    # The attempt goes on: its wait at the next position is accepted.
    suspended = await services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(1, "approval", ""))
    assert suspended.run_status == cpb.RUN_STATUS_WAITING


async def test_a_suspension_with_a_gap_below_its_position_is_refused(services):
    await services.register(TASK)
    a = await services.start(TASK)
    before = await services.counts()
    nothing = await services.refused(services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(9, "e", "")))
    assert nothing.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wait.position 9 leaves position 0 unrecorded" in nothing.details()

    await services.record_step(a.run_id, 1, 0, "a")
    await services.record_step(a.run_id, 1, 2, "c")  # started after b, finished first
    before = await services.counts()
    gap = await services.refused(services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(3, "e", "")))
    assert gap.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wait.position 3 leaves position 1 unrecorded" in gap.details()
    assert await services.counts() == before
    assert (await services.get(a.run_id)).status == cpb.RUN_STATUS_EXECUTING

    await services.record_step(a.run_id, 1, 1, "b")
    suspended = await services.finish(a.run_id, 1, SUSPENDED, wait=event_wait(3, "e", ""))
    assert suspended.run_status == cpb.RUN_STATUS_WAITING


async def test_record_step_beyond_the_gap_bound_is_refused(services):
    await services.register(TASK)
    a = await services.start(TASK)
    before = await services.counts()
    far = await services.refused(record(services, step_request(services, a.run_id, MAX_STEPS_IN_FLIGHT)))
    assert far.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"position {MAX_STEPS_IN_FLIGHT} " in far.details()
    assert await services.counts() == before

    last = MAX_STEPS_IN_FLIGHT - 1
    await record(services, step_request(services, a.run_id, last))  # steps in flight below it
    await record(services, step_request(services, a.run_id, last + MAX_STEPS_IN_FLIGHT))
    beyond = last + 2 * MAX_STEPS_IN_FLIGHT + 1
    refused = await services.refused(record(services, step_request(services, a.run_id, beyond)))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"position {beyond} " in refused.details()
    negative = await services.refused(record(services, step_request(services, a.run_id, -1)))
    assert negative.code() == grpc.StatusCode.INVALID_ARGUMENT and "position" in negative.details()
    run = await services.get(a.run_id)
    assert [s.position for s in run.steps] == [last, last + MAX_STEPS_IN_FLIGHT]


# ---- what a step record carries (findings 1 and 5) ------------------------------------


async def test_a_step_record_that_cannot_be_journaled_is_refused(services):
    await services.register(TASK)
    a = await services.start(TASK)
    before = await services.counts()
    cases = {
        "output": step_request(services, a.run_id, 0, output=cpb.Payload(data=b"", encoding="json/plain")),
        "tries": step_request(services, a.run_id, 0, tries=0),
        "try_errors": step_request(
            services, a.run_id, 0, tries=12, try_errors=[error(f"try {i}") for i in range(MAX_TRY_ERRORS + 1)]
        ),
        "error": step_request(services, a.run_id, 0, status=cpb.STEP_STATUS_FAILED),
    }
    for field, request in cases.items():
        refused = await services.refused(record(services, request))
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert refused.details().startswith(f"{field}:"), refused.details()
    no_output = step_request(services, a.run_id, 0)
    no_output.ClearField("output")
    assert (await services.refused(record(services, no_output))).details().startswith("output:")
    assert await services.counts() == before
    # JSON null is the 4 bytes `null`.
    recorded = await record(services, step_request(services, a.run_id, 0))
    assert recorded.step.output.data == b"null"


async def test_the_errors_of_failed_tries_are_stored_and_returned(services):
    await services.register(retrying_task(min_timeout=0.01))
    a = await services.start(TASK)
    tries = [error("timeout 1"), error("timeout 2")]
    request = step_request(services, a.run_id, 0, "fetch", tries=3, try_errors=tries)
    recorded = await record(services, request)
    assert [e.message for e in recorded.step.try_errors] == ["timeout 1", "timeout 2"]
    run = await services.get(a.run_id)
    assert [(s.tries, list(s.try_errors)) for s in run.steps] == [(3, tries)]
    await record(services, step_request(services, a.run_id, 1, "plain"))

    await services.finish(a.run_id, 1, FAILED, error=error("boom"))
    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)
    (second,) = await services.claim(TASK)
    assert [list(s.try_errors) for s in second.steps] == [tries, []]


# ---- a sleep is a wait (finding 2) ------------------------------------------------------


async def test_a_sleep_records_its_step_when_it_fires_and_the_next_attempt_replays_past_it(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.record_step(a.run_id, 1, 0, "before", 1)
    until = datetime.now(UTC) + timedelta(milliseconds=100)
    sleep = wpb.WaitSpec(position=1, name="wait.sleep", sleep=wpb.SleepWait(until=timestamp(until)))
    suspended = await services.finish(a.run_id, 1, SUSPENDED, wait=sleep)
    assert suspended.run_status == cpb.RUN_STATUS_WAITING
    run = await services.get(a.run_id)
    assert (run.wait.kind, run.wait.position, run.wait.until.ToDatetime(tzinfo=UTC)) == ("sleep", 1, until)
    assert len(run.steps) == 1

    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)  # history's timer fired
    (resumed,) = await services.claim(TASK)
    assert resumed.attempt == 2
    expected = until.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert [
        (s.position, s.name, s.status, s.output.encoding, json.loads(s.output.data)) for s in resumed.steps
    ] == [
        (0, "before", cpb.STEP_STATUS_COMPLETED, "json/plain", 1),
        (1, "wait.sleep", cpb.STEP_STATUS_COMPLETED, "json/plain", expected),
    ]


async def test_a_suspension_without_a_wait_is_refused(services):
    await services.register(TASK)
    a = await services.start(TASK)
    refused = await services.refused(services.finish(a.run_id, 1, SUSPENDED))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details().startswith("wait:")


# ---- child results (finding 3) ----------------------------------------------------------


async def test_a_children_wait_resolves_to_child_results_with_run_statuses_and_payloads(services):
    await services.register(TASK, CHILD)
    parent = await services.start(TASK)
    children = wpb.ChildrenWait(runs=[wpb.ChildRun(task_id=CHILD, payload=json_payload(i)) for i in range(3)])
    wait = wpb.WaitSpec(position=0, name="child.batch_trigger_and_wait", children=children)
    await services.finish(parent.run_id, 1, SUSPENDED, wait=wait)
    ids = list((await services.get(parent.run_id)).child_run_ids)

    claimed = {c.run_id: c for c in await services.claim(CHILD, max_attempts=3)}
    assert set(claimed) == set(ids)
    await services.finish(ids[0], 1, COMPLETED, {"page": 0})
    await services.finish(ids[1], 1, FAILED, error=error("bad page", non_retryable=True))
    await services.history.CancelRun(rpb.CancelRunRequest(namespace=services.namespace, run_id=ids[2]))

    await services.wait_status(parent.run_id, cpb.RUN_STATUS_QUEUED)
    (resumed,) = await services.claim(TASK)
    (step,) = resumed.steps
    assert (step.name, step.status, step.output.encoding) == (
        "child.batch_trigger_and_wait",
        cpb.STEP_STATUS_COMPLETED,
        "proto/cairn.v1.ChildResults",
    )
    results = wpb.ChildResults.FromString(step.output.data).results
    assert [(r.run_id, r.status) for r in results] == [
        (ids[0], cpb.RUN_STATUS_COMPLETED),
        (ids[1], cpb.RUN_STATUS_FAILED),
        (ids[2], cpb.RUN_STATUS_CANCELED),
    ]
    assert (results[0].output.encoding, json.loads(results[0].output.data)) == ("json/plain", {"page": 0})
    assert not results[0].HasField("error")
    assert (results[1].error.type, results[1].error.message) == ("ValueError", "bad page")
    assert results[2].error.type == error_types.CANCELED


# ---- server-made error types (finding 7) ------------------------------------------------


async def test_server_made_error_types_are_named_cairn(services):
    await services.register(TASK)
    assert all(t.startswith("cairn.") for t in error_types.ALL)

    canceled = await services.start(TASK)
    response = await services.history.CancelRun(
        rpb.CancelRunRequest(namespace=services.namespace, run_id=canceled.run_id)
    )
    assert response.run.error.type == error_types.CANCELED == "cairn.Canceled"

    expired = (await services.trigger(TASK, options=cpb.TriggerOptions(ttl=seconds(0.05)))).run.id
    assert (await services.wait_status(expired, cpb.RUN_STATUS_EXPIRED)).error.type == "cairn.Expired"

    timed_out = await services.start(TASK, options=cpb.TriggerOptions(max_duration=seconds(0.05)))
    run = await services.wait_status(timed_out.run_id, cpb.RUN_STATUS_TIMED_OUT)
    assert run.error.type == "cairn.MaxDurationExceeded"

    waiting = await services.start(TASK)
    wait = event_wait(0, "never", "")
    wait.timeout_at.CopyFrom(timestamp(datetime.now(UTC) + timedelta(milliseconds=50)))
    await services.finish(waiting.run_id, 1, SUSPENDED, wait=wait)
    await services.wait_status(waiting.run_id, cpb.RUN_STATUS_QUEUED)
    (step,) = (await services.get(waiting.run_id)).steps
    assert (step.status, step.error.type) == (cpb.STEP_STATUS_FAILED, "cairn.WaitTimeout")


@pytest.mark.lease_seconds(0.3)
async def test_an_expired_lease_is_cairn_lease_expired_and_its_attempt_is_superseded(services):
    await services.register(retrying_task(min_timeout=30))
    a = await services.start(TASK)
    run = await services.wait_status(a.run_id, cpb.RUN_STATUS_RETRYING)  # no heartbeat: the lease expired
    assert [(x.status, x.error.type) for x in run.attempts] == [
        (cpb.ATTEMPT_STATUS_CRASHED, "cairn.LeaseExpired")
    ]
    for write in (heartbeat(services, a.run_id, 1), services.record_step(a.run_id, 1, 0, "late")):
        refused = await services.refused(write)
        assert (refused.code(), gone(refused)) == (grpc.StatusCode.FAILED_PRECONDITION, "superseded")


# ---- why an attempt's write is refused (finding 8) --------------------------------------


async def test_a_canceled_runs_attempt_is_told_canceled(services):
    await services.register(TASK)
    a = await services.start(TASK)
    await services.history.CancelRun(rpb.CancelRunRequest(namespace=services.namespace, run_id=a.run_id))
    for write in (heartbeat(services, a.run_id, 1), services.record_step(a.run_id, 1, 0, "late")):
        refused = await services.refused(write)
        assert (refused.code(), gone(refused)) == (grpc.StatusCode.FAILED_PRECONDITION, "canceled")
    batch = await services.history.BatchWrite(
        wpb.BatchWriteRequest(writes=[wpb.AttemptWrite(record_step=step_request(services, a.run_id, 0))])
    )
    (result,) = batch.results
    assert (result.error.code, result.error.attempt_gone) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        wpb.ATTEMPT_GONE_CANCELED,
    )


async def test_a_timed_out_runs_attempt_is_told_timed_out(services):
    await services.register(TASK)
    a = await services.start(TASK, options=cpb.TriggerOptions(max_duration=seconds(0.05)))
    await services.wait_status(a.run_id, cpb.RUN_STATUS_TIMED_OUT)
    refused = await services.refused(heartbeat(services, a.run_id, 1))
    assert (refused.code(), gone(refused)) == (grpc.StatusCode.FAILED_PRECONDITION, "timed_out")


async def test_an_attempt_that_ended_is_told_ended(services):
    await services.register(retrying_task(min_timeout=30))
    a = await services.start(TASK)
    await services.finish(a.run_id, 1, FAILED, error=error("boom"))  # the run retries later
    refused = await services.refused(services.record_step(a.run_id, 1, 0, "late"))
    assert (refused.code(), gone(refused)) == (grpc.StatusCode.FAILED_PRECONDITION, "ended")
    batch = await services.history.BatchWrite(
        wpb.BatchWriteRequest(
            writes=[
                wpb.AttemptWrite(record_step=step_request(services, a.run_id, 0)),
                wpb.AttemptWrite(
                    finish_attempt=wpb.FinishAttemptRequest(
                        namespace=services.namespace,
                        run_id=a.run_id,
                        attempt=1,
                        outcome=COMPLETED,
                        output=json_payload(1),
                        attempt_token=services.token(a.run_id, 1),
                    )
                ),
            ]
        )
    )
    assert [r.error.attempt_gone for r in batch.results] == [wpb.ATTEMPT_GONE_ENDED] * 2

    other = await services.refused(services.record_step(a.run_id, 7, 0, "never started"))
    assert other.code() == grpc.StatusCode.FAILED_PRECONDITION and gone(other) is None
