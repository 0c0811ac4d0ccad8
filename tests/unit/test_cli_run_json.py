"""What `cairn runs get` prints of a step (issue 11): a children wait's
ChildResults output rendered as JSON (lowercase status, decoded output), a
binary/plain payload whole in base64, the errors of a step's failed in-place
tries (all with --json, a count and the last one's type in the step table)."""

from __future__ import annotations

import base64
import json

import pytest

from cairn.run_json import payload_to_json, run_to_dict, step_to_dict
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.output import show_run, tries_text


def child_results_payload() -> cpb.Payload:
    results = wpb.ChildResults(
        results=[
            wpb.ChildResult(
                run_id="r1",
                status=cpb.RUN_STATUS_COMPLETED,
                output=cpb.Payload(data=b'{"n":1}', encoding="json/plain"),
            ),
            wpb.ChildResult(
                run_id="r2",
                status=cpb.RUN_STATUS_TIMED_OUT,
                error=cpb.ErrorInfo(type="cairn.MaxDurationExceeded", message="too long"),
            ),
            wpb.ChildResult(
                run_id="r3",
                status=cpb.RUN_STATUS_COMPLETED,
                output=cpb.Payload(data=b"\x00\x01", encoding="binary/plain"),
            ),
        ]
    )
    return cpb.Payload(data=results.SerializeToString(), encoding="proto/cairn.v1.ChildResults")


def test_child_results_render_as_a_list_of_children() -> None:
    rendered = payload_to_json(child_results_payload())
    assert rendered == [
        {"run_id": "r1", "status": "completed", "output": {"n": 1}, "error": None},
        {
            "run_id": "r2",
            "status": "timed_out",
            "output": None,
            "error": {
                "type": "cairn.MaxDurationExceeded",
                "message": "too long",
                "stack_trace": "",
                "non_retryable": False,
            },
        },
        {
            "run_id": "r3",
            "status": "completed",
            "output": {"encoding": "binary/plain", "bytes": 2, "base64": "AAE="},
            "error": None,
        },
    ]
    json.dumps(rendered)  # plain JSON values


def test_child_results_that_do_not_parse_are_described() -> None:
    bad = cpb.Payload(data=b"\xff\xff\xff", encoding="proto/cairn.v1.ChildResults")
    assert payload_to_json(bad) == {"encoding": "proto/cairn.v1.ChildResults", "bytes": 3}


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", bytes(range(256))])
def test_binary_is_whole_in_base64(data: bytes) -> None:
    rendered = payload_to_json(cpb.Payload(data=data, encoding="binary/plain"))
    assert rendered == {
        "encoding": "binary/plain",
        "bytes": len(data),
        "base64": base64.b64encode(data).decode(),
    }
    assert base64.b64decode(rendered["base64"]) == data


def test_json_and_unknown_encodings() -> None:
    assert payload_to_json(cpb.Payload(data=b'{"a":[1,2]}')) == {"a": [1, 2]}
    assert payload_to_json(cpb.Payload(data=b"", encoding="json/plain")) is None
    assert payload_to_json(cpb.Payload(data=b"abc", encoding="x/y")) == {"encoding": "x/y", "bytes": 3}
    assert payload_to_json(cpb.Payload(data=b"{", encoding="json/plain")) == {
        "encoding": "json/plain",
        "bytes": 1,
    }


def retried_step() -> cpb.Step:
    return cpb.Step(
        position=2,
        name="fetch",
        status=cpb.STEP_STATUS_COMPLETED,
        attempt=1,
        tries=3,
        output=cpb.Payload(data=b'"ok"'),
        try_errors=[
            cpb.ErrorInfo(type="ConnectionError", message="reset"),
            cpb.ErrorInfo(type="TimeoutError", message="slow"),
        ],
    )


def test_a_steps_try_errors_are_all_in_its_json() -> None:
    s = step_to_dict(retried_step())
    assert [e["type"] for e in s["try_errors"]] == ["ConnectionError", "TimeoutError"]
    assert s["try_errors"][1]["message"] == "slow"
    assert step_to_dict(cpb.Step(position=0, name="x", tries=1))["try_errors"] == []


def test_the_step_table_shows_the_count_and_the_last_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert tries_text(step_to_dict(retried_step())) == "3 (2 errors, last TimeoutError)"
    one = cpb.Step(tries=2, try_errors=[cpb.ErrorInfo(type="E")])
    assert tries_text(step_to_dict(one)) == "2 (1 error, last E)"
    assert tries_text(step_to_dict(cpb.Step(tries=1))) == "1"

    children = cpb.Step(
        position=3,
        name="wait.for_children",
        status=cpb.STEP_STATUS_COMPLETED,
        tries=1,
        output=child_results_payload(),
    )
    run = cpb.Run(id="run-1", task_id="t", status=cpb.RUN_STATUS_COMPLETED, steps=[retried_step(), children])
    show_run(run_to_dict(run), as_json=False, full=True)
    table = capsys.readouterr().out
    assert "3 (2 errors, last TimeoutError)" in table
    assert '"run_id": "r1"' in table  # the children's results, as JSON

    show_run(run_to_dict(run), as_json=True, full=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"][0]["try_errors"][0]["type"] == "ConnectionError"
    assert printed["steps"][1]["output"][1]["status"] == "timed_out"
