"""Running one attempt of a task (execute_attempt against the in-memory FakeStub
of sdk_fakes.py) for the SDK tests of durable waits (test_sdk_waits.py), child
runs (test_sdk_child_runs.py) and run metadata (test_sdk_run_metadata.py): the
assignment handed to the attempt (run-1, attempt 2), recorded steps to replay
(a children wait's as history records it: a serialized ChildResults), the
attempt's output, and two steps to call around a wait."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from sdk_fakes import FakeStub

from cairn import payloads
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import step
from worker_sdk._execution import execute_attempt


def assignment(
    steps: list[common_pb2.Step] = (),
    payload: Any = None,
    lease: float = 30.0,
    metadata: dict[str, Any] | None = None,
    parent: str = "",
) -> wpb.AttemptAssignment:
    lease_d = Duration()
    lease_d.FromNanoseconds(int(lease * 1e9))
    a = wpb.AttemptAssignment(
        run_id="run-1",
        attempt=2,
        task_id="t",
        payload=common_pb2.Payload(data=payloads.encode_json(payload), encoding="json/plain"),
        steps=steps,
        lease_duration=lease_d,
        parent_run_id=parent,
    )
    if metadata is not None:
        s = Struct()
        s.update(metadata)
        a.metadata.CopyFrom(s)
    return a


def execute(
    t: Any, a: wpb.AttemptAssignment, stub: FakeStub | None = None
) -> tuple[wpb.FinishAttemptRequest | None, FakeStub]:
    stub = stub or FakeStub()
    return asyncio.run(execute_attempt(stub, "default", t, a)), stub


def completed(position: int, name: str, value: Any) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=payloads.encode_json(value), encoding="json/plain"),
    )


def children_done(position: int, name: str, *results: wpb.ChildResult) -> common_pb2.Step:
    """A children wait's step as history records it: a serialized ChildResults."""
    data = wpb.ChildResults(results=results).SerializeToString()
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=data, encoding="proto/cairn.v1.ChildResults"),
    )


def child(
    run_id: str, status: int, output: Any = None, error_type: str = "", message: str = ""
) -> wpb.ChildResult:
    """One child's result: its output as json/plain when completed, else its error."""
    result = wpb.ChildResult(run_id=run_id, status=status)
    if status == common_pb2.RUN_STATUS_COMPLETED:
        result.output.CopyFrom(common_pb2.Payload(data=payloads.encode_json(output), encoding="json/plain"))
    else:
        result.error.CopyFrom(common_pb2.ErrorInfo(type=error_type, message=message))
    return result


def output_of(finish: wpb.FinishAttemptRequest) -> Any:
    return payloads.decode(finish.output.data, finish.output.encoding)


@step(name="before")
async def before() -> str:
    return "before"


@step(name="after")
async def after() -> str:
    return "after"
