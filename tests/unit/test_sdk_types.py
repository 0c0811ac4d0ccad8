"""The SDK's status enums name every status the protocol defines, so a run,
attempt, step or token read from the server never loses its status; a step
read back carries its in-place tries' errors, and a children wait's step its
results."""

from __future__ import annotations

import pytest

from cairn.statuses import ATTEMPT_STATUS_NAMES, RUN_STATUS_NAMES, STEP_STATUS_NAMES, WAIT_TOKEN_STATUS_NAMES
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import AttemptStatus, ErrorInfo, RunStatus, Step, StepStatus, WaitTokenStatus, _convert


@pytest.mark.parametrize(
    ("names", "enum"),
    [
        (RUN_STATUS_NAMES, RunStatus),
        (ATTEMPT_STATUS_NAMES, AttemptStatus),
        (STEP_STATUS_NAMES, StepStatus),
        (WAIT_TOKEN_STATUS_NAMES, WaitTokenStatus),
    ],
)
def test_every_protocol_status_has_an_sdk_member(names: dict[int, str], enum: type) -> None:
    assert set(names.values()) == {m.value for m in enum} - {""}


def test_a_step_read_back_carries_its_try_errors_oldest_first() -> None:
    s = common_pb2.Step(
        position=0,
        name="flaky",
        status=common_pb2.STEP_STATUS_COMPLETED,
        tries=3,
        output=common_pb2.Payload(data=b'"ok"', encoding="json/plain"),
        try_errors=[
            common_pb2.ErrorInfo(type="ConnectionError", message="first"),
            common_pb2.ErrorInfo(type="TimeoutError", message="second", stack_trace="tb"),
        ],
    )
    step = _convert.step(s)
    assert isinstance(step, Step) and step.output == "ok" and step.tries == 3
    assert step.try_errors == (
        ErrorInfo(type="ConnectionError", message="first"),
        ErrorInfo(type="TimeoutError", message="second", stack_trace="tb"),
    )
    assert _convert.step(common_pb2.Step(position=1, name="once")).try_errors == ()


def test_a_children_wait_step_reads_as_one_result_per_child() -> None:
    results = wpb.ChildResults(
        results=[
            wpb.ChildResult(
                run_id="c1",
                status=common_pb2.RUN_STATUS_COMPLETED,
                output=common_pb2.Payload(data=b'{"n":4}', encoding="json/plain"),
            ),
            wpb.ChildResult(
                run_id="c2",
                status=common_pb2.RUN_STATUS_FAILED,
                error=common_pb2.ErrorInfo(type="ValueError", message="bad", non_retryable=True),
            ),
        ]
    )
    s = common_pb2.Step(
        position=0,
        name="batch_trigger_and_wait:child",
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=results.SerializeToString(), encoding="proto/cairn.v1.ChildResults"),
    )
    assert _convert.step(s).output == [
        {"run_id": "c1", "status": "completed", "output": {"n": 4}, "error": None},
        {
            "run_id": "c2",
            "status": "failed",
            "output": None,
            "error": {"type": "ValueError", "message": "bad", "stack_trace": "", "non_retryable": True},
        },
    ]
    broken = common_pb2.Step(
        position=0,
        name="trigger_and_wait:child",
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=b"\xff\xff", encoding="proto/cairn.v1.ChildResults"),
    )
    assert _convert.step(broken).output == {"encoding": "proto/cairn.v1.ChildResults", "bytes": 2}
