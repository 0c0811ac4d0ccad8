"""Child runs inside an attempt (execute_attempt against an in-memory stand-in
for the WorkerService and RunService stubs): trigger, trigger_and_wait and
batch_trigger_and_wait from a task: what is recorded, how the parent suspends,
and what replay returns."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub
from sdk_wait_helpers import assignment, before, child, children_done, completed, execute, output_of

from cairn import payloads
from cairn.v1 import common_pb2
from worker_sdk import ChildResult, ChildRunFailedError, ErrorInfo, RunHandle, RunStatus, task

COMPLETED = common_pb2.RUN_STATUS_COMPLETED

# ---- child runs --------------------------------------------------------------------------


@task(id="child")
async def child_task(payload: Any) -> Any:
    return payload


def test_trigger_is_a_step_linking_the_child_to_its_parent() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        handle = await child_task.trigger({"n": 1}, priority=5, tags=["a"], delay=30)
        return {"id": handle.id, "task": handle.task_id, "handle": isinstance(handle, RunHandle)}

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["TriggerRun", "RecordStep", "FinishAttempt"]
    trigger = stub.requests("TriggerRun")[0]
    assert (trigger.task_id, trigger.parent_run_id, trigger.idempotency_key) == ("child", "run-1", "run-1:0")
    assert payloads.decode(trigger.payload.data, "json/plain") == {"n": 1}
    assert trigger.options.priority == 5 and list(trigger.options.tags) == ["a"]
    assert trigger.options.delay.ToTimedelta() == timedelta(seconds=30)
    record = stub.requests("RecordStep")[0]
    assert record.name == "trigger:child"
    assert payloads.decode(record.output.data, "json/plain") == {"run_id": "child-1"}
    assert output_of(finish) == {"id": "child-1", "task": "child", "handle": True}


def test_replayed_trigger_does_not_trigger_again() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return (await child_task.trigger(None)).id

    finish, stub = execute(t, assignment([completed(0, "trigger:child", {"run_id": "c-9"})]))
    assert output_of(finish) == "c-9" and stub.methods() == ["FinishAttempt"]


def test_refused_trigger_is_recorded_as_a_non_retryable_step_failure() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        await child_task.trigger(None)

    stub = FakeStub(refuse={"TriggerRun": grpc.StatusCode.NOT_FOUND})
    finish, _ = execute(t, assignment(), stub)
    assert stub.methods() == ["TriggerRun", "RecordStep", "FinishAttempt"]
    assert stub.requests("RecordStep")[0].status == common_pb2.STEP_STATUS_FAILED
    assert finish.error.type == "worker_sdk.errors.NotFoundError" and finish.error.non_retryable


def test_trigger_and_wait_suspends_with_one_child() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        await before()
        return await child_task.trigger_and_wait({"x": 1}, tags=["t1"], max_duration=timedelta(minutes=5))

    finish, stub = execute(t, assignment())
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    spec = finish.wait
    assert (spec.position, spec.name, spec.WhichOneof("kind")) == (1, "trigger_and_wait:child", "children")
    [child] = spec.children.runs
    assert child.task_id == "child"
    assert payloads.decode(child.payload.data, "json/plain") == {"x": 1}
    assert list(child.options.tags) == ["t1"]
    assert child.options.max_duration.ToTimedelta() == timedelta(minutes=5)


def test_trigger_and_wait_returns_the_child_output() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return {"child said": await child_task.trigger_and_wait(1)}

    recorded = children_done(0, "trigger_and_wait:child", child("c1", COMPLETED, {"ok": 1}))
    finish, _ = execute(t, assignment([recorded]))
    assert output_of(finish) == {"child said": {"ok": 1}}


def test_trigger_and_wait_raises_when_the_child_failed() -> None:
    caught = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            await child_task.trigger_and_wait(1)
        except ChildRunFailedError as exc:
            caught.update(
                run_id=exc.run_id,
                task=exc.task_id,
                status=exc.status,
                type=exc.error_type,
                message=exc.message,
                text=str(exc),
            )
        return "handled"

    failed = child("c1", common_pb2.RUN_STATUS_FAILED, error_type="ValueError", message="bad input")
    finish, _ = execute(t, assignment([children_done(0, "trigger_and_wait:child", failed)]))
    assert output_of(finish) == "handled"
    assert caught == {
        "run_id": "c1",
        "task": "child",
        "status": "failed",
        "type": "ValueError",
        "message": "bad input",
        "text": "child run c1 of task 'child' ended failed: ValueError: bad input",
    }


def test_batch_trigger_and_wait_suspends_with_all_children_in_order() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait([{"i": 0}, {"i": 1}, {"i": 2}], priority=3)

    finish, _ = execute(t, assignment())
    spec = finish.wait
    assert spec.name == "batch_trigger_and_wait:child"
    assert [payloads.decode(c.payload.data, "json/plain") for c in spec.children.runs] == [
        {"i": 0},
        {"i": 1},
        {"i": 2},
    ]
    assert all(c.options.priority == 3 and c.task_id == "child" for c in spec.children.runs)


def test_batch_results_come_back_in_order() -> None:
    got = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        results = await child_task.batch_trigger_and_wait(["a", "b", "c"])
        got["results"] = results
        with pytest.raises(ChildRunFailedError, match="ended canceled"):
            results[1].unwrap()
        return [r.unwrap() for r in results if r.ok]

    recorded = children_done(
        0,
        "batch_trigger_and_wait:child",
        child("c1", COMPLETED, "A"),
        child("c2", common_pb2.RUN_STATUS_CANCELED, error_type="cairn.Canceled", message="by parent"),
        child("c3", COMPLETED, "C"),
    )
    finish, _ = execute(t, assignment([recorded]))
    assert output_of(finish) == ["A", "C"]
    results = got["results"]
    assert [r.run_id for r in results] == ["c1", "c2", "c3"]
    assert all(isinstance(r, ChildResult) for r in results)
    assert [r.ok for r in results] == [True, False, True]
    assert [r.status for r in results] == [RunStatus.COMPLETED, RunStatus.CANCELED, RunStatus.COMPLETED]
    assert [r.output for r in results] == ["A", None, "C"]
    assert results[0].error is None
    assert results[1].error == ErrorInfo(type="cairn.Canceled", message="by parent")


def test_batch_result_of_another_size_is_non_determinism() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait(["a", "b"])

    recorded = children_done(0, "batch_trigger_and_wait:child", child("c1", COMPLETED, "A"))
    finish, _ = execute(t, assignment([recorded]))
    assert finish.error.type == "worker_sdk.errors.NonDeterminismError"


def test_a_children_wait_recorded_as_json_is_not_read_as_child_results() -> None:
    # The old undocumented shape (a JSON list) is not the protocol's ChildResults.
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.trigger_and_wait(1)

    old = [{"run_id": "c1", "status": "completed", "output": 1, "error": None}]
    finish, _ = execute(t, assignment([completed(0, "trigger_and_wait:child", old)]))
    assert finish.error.type == "worker_sdk.errors.CairnError"
    assert "not a ChildResults" in finish.error.message and "'json/plain'" in finish.error.message


def test_a_timed_out_children_wait_raises_wait_timeout() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.trigger_and_wait(1)

    timed_out = common_pb2.Step(
        position=0,
        name="trigger_and_wait:child",
        status=common_pb2.STEP_STATUS_FAILED,
        error=common_pb2.ErrorInfo(type="cairn.WaitTimeout", message="children not done in time"),
    )
    finish, _ = execute(t, assignment([timed_out]))
    assert finish.error.type == "worker_sdk.errors.WaitTimeoutError"


def test_empty_batch_returns_without_suspending() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        return await child_task.batch_trigger_and_wait([])

    finish, stub = execute(t, assignment())
    assert output_of(finish) == [] and stub.methods() == ["FinishAttempt"]


def test_trigger_and_wait_outside_a_task_points_to_the_client() -> None:
    with pytest.raises(RuntimeError, match="Client.trigger_and_wait"):
        child_task.trigger_and_wait(1)
    with pytest.raises(RuntimeError, match="inside a task function"):
        child_task.batch_trigger_and_wait([1])


def test_bad_options_are_refused_at_call_time() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        with pytest.raises(TypeError, match="unknown option.*colour"):
            child_task.trigger(1, colour="red")
        with pytest.raises(ValueError, match="metadata"):
            child_task.trigger_and_wait(1, metadata={"x": float("nan")})
        with pytest.raises(payloads.PayloadError, match="payload for task 'child'"):
            child_task.trigger_and_wait(object())
        return "ok"

    finish, stub = execute(t, assignment())
    assert output_of(finish) == "ok", finish.error.message
    assert stub.methods() == ["FinishAttempt"]
