"""The frontend's side of W3C trace context (issue 12 traces), without a
cluster: an invalid TriggerOptions.traceparent is refused naming the field,
and a trigger's empty options.traceparent is filled from the call's
`traceparent` metadata (an invalid header is ignored)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import ServiceError
from services.frontend import validation as check
from services.frontend.interceptors import default_traceparent

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def refusal(check_it: Any) -> str:
    with pytest.raises(ServiceError) as info:
        check_it()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


@pytest.mark.parametrize("bad", ["nope", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", GOOD.upper()])
def test_an_invalid_traceparent_is_refused_naming_the_field(bad: str) -> None:
    request = rpb.TriggerRunRequest(task_id="t", options=cpb.TriggerOptions(traceparent=bad))
    assert refusal(lambda: check.trigger(request)).startswith("options.traceparent: ")
    batch = rpb.BatchTriggerRunsRequest(
        runs=[rpb.TriggerRunRequest(task_id="t"), rpb.TriggerRunRequest(task_id="t", options=request.options)]
    )
    assert refusal(lambda: check.batch_trigger(batch)).startswith("runs[1].options.traceparent: ")


def test_a_valid_or_empty_traceparent_passes() -> None:
    for value in (GOOD, ""):
        check.trigger(rpb.TriggerRunRequest(task_id="t", options=cpb.TriggerOptions(traceparent=value)))


def test_a_childs_invalid_traceparent_is_refused_naming_the_child() -> None:
    child = wpb.ChildRun(task_id="c", options=cpb.TriggerOptions(traceparent="bad"))
    wait = wpb.WaitSpec(position=0, name="w", children=wpb.ChildrenWait(runs=[child]))
    request = wpb.FinishAttemptRequest(
        run_id="6f1c1c1e-2a6b-4d0e-9a53-0d6b5c1f0a11",
        attempt=1,
        attempt_token="r3x6vT0cQm1kZ9PzH2wYbN4uLs8aEfGj",
        outcome=wpb.ATTEMPT_OUTCOME_SUSPENDED,
        wait=wait,
    )
    assert "wait.children.runs[0].options.traceparent: " in refusal(lambda: check.finish(request))


class FakeContext:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def test_the_metadata_traceparent_fills_an_empty_options_traceparent() -> None:
    request = rpb.TriggerRunRequest(task_id="t")
    default_traceparent(request, FakeContext(("traceparent", GOOD)))  # type: ignore[arg-type]
    assert request.options.traceparent == GOOD


def test_the_requests_own_traceparent_wins_over_the_metadata() -> None:
    request = rpb.TriggerRunRequest(task_id="t", options=cpb.TriggerOptions(traceparent=OTHER))
    default_traceparent(request, FakeContext(("traceparent", GOOD)))  # type: ignore[arg-type]
    assert request.options.traceparent == OTHER


def test_each_batch_item_without_one_takes_the_metadata_traceparent() -> None:
    batch = rpb.BatchTriggerRunsRequest(
        runs=[
            rpb.TriggerRunRequest(task_id="t"),
            rpb.TriggerRunRequest(task_id="t", options=cpb.TriggerOptions(traceparent=OTHER)),
        ]
    )
    default_traceparent(batch, FakeContext(("traceparent", GOOD)))  # type: ignore[arg-type]
    assert [r.options.traceparent for r in batch.runs] == [GOOD, OTHER]


@pytest.mark.parametrize(
    "metadata",
    [(), (("traceparent", "garbage"),), (("traceparent", GOOD), ("traceparent", OTHER)), (("x", GOOD),)],
)
def test_no_invalid_missing_or_ambiguous_header_is_used(metadata: tuple[tuple[str, str], ...]) -> None:
    request = rpb.TriggerRunRequest(task_id="t")
    default_traceparent(request, FakeContext(*metadata))  # type: ignore[arg-type]
    assert request.options.traceparent == ""


def test_other_requests_are_left_alone() -> None:
    request = rpb.GetRunRequest(run_id="x")
    default_traceparent(request, FakeContext(("traceparent", GOOD)))  # type: ignore[arg-type]
    assert request.run_id == "x"
