"""The worker protocol's rules from outside Python (issue 11), with grpcurl as
the worker against a real cluster (history, matching, frontend, PostgreSQL,
NATS):

- every bad step record, wait and payload (D1, D2, D5, D9) is refused with
  INVALID_ARGUMENT naming the field, in the protocol's words (never the JSON
  parser's), and writes nothing: every table's content is as it was; so is a
  step too far above the journal, a wait at a recorded position or above a
  gap (FAILED_PRECONDITION naming the position);
- what the rules accept is stored as sent: a binary/plain output byte for byte,
  a step's try_errors;
- a write or heartbeat of an attempt that is gone answers FAILED_PRECONDITION
  with the trailing metadata "cairn-attempt-gone" (D8), which reaches a grpcurl
  client through the frontend: canceled, ended, timed_out, superseded.
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
from api_helpers import JSON
from harness import (
    ALL_TABLES,
    GRPCURL,
    Cluster,
    auth,
    b64_json,
    grpcurl_call,
    grpcurl_error,
    json_field,
    wait_for,
)
from harness.database import sql

from cairn import keys
from cairn.limits import MAX_STEPS_IN_FLIGHT, MAX_TRY_ERRORS

WORKER = "rules-worker"
RECORD = "cairn.v1.WorkerService/RecordStep"
FINISH = "cairn.v1.WorkerService/FinishAttempt"
BATCH = "cairn.v1.WorkerService/BatchWrite"
HEARTBEAT = "cairn.v1.WorkerService/Heartbeat"
TRIGGER = "cairn.v1.RunService/TriggerRun"
GET = "cairn.v1.RunService/GetRun"
CHILD_RESULTS = "proto/cairn.v1.ChildResults"
# The attempt_token of attempt 1 of each run start_run polled: every write of
# the attempt carries it, as the worker it was given to.
TOKENS: dict[str, str] = {}


def attempt_1(run_id: str) -> dict[str, Any]:
    """What names attempt 1 of the run in a write: run_id, attempt, attempt_token."""
    return {"run_id": run_id, "attempt": 1, "attempt_token": TOKENS[run_id]}


def register(address: str, *tasks: str, max_attempts: int = 1) -> None:
    grpcurl_call(
        address,
        "cairn.v1.WorkerService/RegisterWorker",
        {
            "worker_id": WORKER,
            "version": "grpcurl-1",
            "slots": 10,
            "tasks": [{"task_id": t, "retry": {"max_attempts": max_attempts}} for t in tasks],
        },
    )


def start_run(address: str, task: str, options: dict[str, Any] | None = None) -> str:
    """Triggers a run of task and polls it: its attempt 1 is executing."""
    request: dict[str, Any] = {"task_id": task, "payload": {"data": b64_json({"n": 1}), "encoding": JSON}}
    if options:
        request["options"] = options
    run_id: str = grpcurl_call(address, TRIGGER, request)["run"]["id"]
    polled = grpcurl_call(
        address,
        "cairn.v1.WorkerService/PollAttempt",
        {"worker_id": WORKER, "task_ids": [task], "wait": "10s"},
    )
    assert [json_field(a, "run_id") for a in polled.get("assignments", [])] == [run_id], polled
    TOKENS[run_id] = json_field(polled["assignments"][0], "attempt_token")
    return run_id


def snapshot(cluster: Cluster) -> dict[str, str]:
    """Every table's whole content, as one digest per table."""
    digests = {}
    for table in ALL_TABLES:
        rows = sql(
            cluster.database_url,
            f"SELECT coalesce(md5(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text)), '') AS d "
            f"FROM {table} t",
        )
        digests[table] = rows[0]["d"]
    return digests


def json_out(value: bytes | str, encoding: str = JSON) -> dict[str, str]:
    data = value.encode() if isinstance(value, str) else value
    return {"data": base64.b64encode(data).decode(), "encoding": encoding}


def step(run_id: str, position: int = 1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        **attempt_1(run_id),
        "position": position,
        "name": f"s{position}",
        "status": "STEP_STATUS_COMPLETED",
        "tries": 1,
        "output": json_out("1"),
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def refused_naming(address: str, method: str, data: dict[str, Any], field: str, *words: str) -> str:
    """The call is INVALID_ARGUMENT with a message that starts with the field."""
    stderr = grpcurl_error(address, method, data, "InvalidArgument")
    message = stderr.split("Message:", 1)[1].strip() if "Message:" in stderr else stderr
    assert message.startswith(f"{field}:"), message
    for word in words:
        assert word in message, message
    for parser_words in ("Expecting", "delimiter", "Extra data", "JSONDecodeError"):
        assert parser_words not in message, f"the JSON parser's words leak: {message}"
    return message


@pytest.mark.cluster_options(lease_seconds=60)
def test_bad_step_records_waits_and_payloads_are_refused_naming_the_field_and_write_nothing(
    cluster: Cluster,
) -> None:
    address = cluster.address
    register(address, "rules")
    run_id = start_run(address, "rules")
    grpcurl_call(address, RECORD, step(run_id, 0))  # the journal has position 0
    err = {"type": "ValueError", "message": "no"}
    before = snapshot(cluster)

    # D1, D5: a step record's fields
    refused_naming(address, RECORD, step(run_id, tries=0), "tries", "got 0")
    refused_naming(address, RECORD, step(run_id, tries=-1), "tries")
    refused_naming(address, RECORD, step(run_id, output=None), "output", "required")
    refused_naming(address, RECORD, step(run_id, output={}), "output", "empty")
    refused_naming(address, RECORD, step(run_id, output=json_out(b"")), "output", "empty")
    refused_naming(
        address, RECORD, step(run_id, output=json_out("{oops")), "output", "not valid JSON (line 1, column 2)"
    )
    refused_naming(address, RECORD, step(run_id, output=json_out("[1,\n2,]")), "output", "(line 2, column 3)")
    refused_naming(address, RECORD, step(run_id, output=json_out("NaN")), "output", "not valid JSON")
    refused_naming(
        address, RECORD, step(run_id, output=json_out(b'"\xff"')), "output", "not valid UTF-8 at byte 1"
    )
    refused_naming(address, RECORD, step(run_id, position=-1), "position")
    refused_naming(
        address, RECORD, step(run_id, status="STEP_STATUS_FAILED", output=None), "error", "required"
    )
    refused_naming(
        address,
        RECORD,
        step(run_id, status="STEP_STATUS_FAILED", output=None, error={"message": "m"}),
        "error.type",
    )
    too_many = MAX_TRY_ERRORS + 1
    refused_naming(
        address,
        RECORD,
        step(run_id, tries=too_many + 1, try_errors=[err] * too_many),
        "try_errors",
        str(MAX_TRY_ERRORS),
    )
    refused_naming(
        address, RECORD, step(run_id, tries=3, try_errors=[err, {"message": "x"}]), "try_errors[1].type"
    )
    # D9: encodings
    message = refused_naming(
        address, RECORD, step(run_id, output=json_out("x", "application/msgpack")), "output.encoding"
    )
    assert "'application/msgpack'" in message and "'json/plain'" in message and "'binary/plain'" in message
    refused_naming(
        address, RECORD, step(run_id, output=json_out("", CHILD_RESULTS)), "output.encoding", "history only"
    )
    refused_naming(
        address,
        TRIGGER,
        {"task_id": "rules", "payload": json_out("", CHILD_RESULTS)},
        "payload.encoding",
        "history only",
    )
    refused_naming(
        address, TRIGGER, {"task_id": "rules", "payload": json_out("{", "text/plain")}, "payload.encoding"
    )
    refused_naming(
        address, TRIGGER, {"task_id": "rules", "payload": json_out("{")}, "payload", "not valid JSON"
    )
    complete = {**attempt_1(run_id), "outcome": "ATTEMPT_OUTCOME_COMPLETED"}
    refused_naming(address, FINISH, {**complete, "output": json_out("x", "xml/tagged")}, "output.encoding")
    refused_naming(address, FINISH, {**complete, "output": json_out(b"\xc3\x28")}, "output", "UTF-8")
    refused_naming(address, FINISH, {**complete, "outcome": "ATTEMPT_OUTCOME_FAILED"}, "error", "required")
    # D2: a sleep is a wait with its time
    suspend = {**attempt_1(run_id), "outcome": "ATTEMPT_OUTCOME_SUSPENDED"}
    refused_naming(address, FINISH, suspend, "wait", "required")
    refused_naming(
        address,
        FINISH,
        {**suspend, "wait": {"position": 1, "name": "sleep", "sleep": {}}},
        "wait.sleep.until",
    )
    # BatchWrite: one bad write refuses the batch, naming it; its good write is not written either
    refused_naming(
        address,
        BATCH,
        {"writes": [{"record_step": step(run_id, 1)}, {"record_step": step(run_id, 2, tries=0)}]},
        "writes[1].record_step.tries",
    )
    assert snapshot(cluster) == before, "a refused request wrote something"

    # D1, history's part (the data-loss case): where a step or a wait may be.
    far = MAX_STEPS_IN_FLIGHT + 1  # the highest recorded position is 0
    message = grpcurl_error(address, RECORD, step(run_id, far), "FailedPrecondition")
    assert "position" in message and str(far) in message, message
    event = {"event": {"name": "go"}}
    message = grpcurl_error(
        address,
        FINISH,
        {**suspend, "wait": {"position": 0, "name": "wait.event", **event}},
        "FailedPrecondition",
    )
    assert "wait.position 0 is already recorded" in message, message
    message = grpcurl_error(
        address,
        FINISH,
        {**suspend, "wait": {"position": 5, "name": "wait.event", **event}},
        "FailedPrecondition",
    )
    assert "position 1" in message, message  # the first missing position below the wait
    assert snapshot(cluster) == before, "a refused request wrote something"

    # What the rules accept is stored as sent.
    binary = bytes(range(256))
    grpcurl_call(address, RECORD, step(run_id, 1, output=json_out(binary, "binary/plain")))
    grpcurl_call(address, RECORD, step(run_id, 2, output=json_out("null")))
    grpcurl_call(
        address,
        RECORD,
        step(run_id, 3, tries=3, try_errors=[{"type": "ConnectionError", "message": "reset"}, err]),
    )
    steps = grpcurl_call(address, GET, {"run_id": run_id})["run"]["steps"]
    by_position = {s.get("position", 0): s for s in steps}
    assert base64.b64decode(by_position[1]["output"]["data"]) == binary
    assert json_field(by_position[1]["output"], "encoding") == "binary/plain"
    assert base64.b64decode(by_position[2]["output"]["data"]) == b"null"
    assert by_position[3]["tries"] == 3
    assert [e["type"] for e in json_field(by_position[3], "try_errors")] == ["ConnectionError", "ValueError"]
    assert [e["message"] for e in json_field(by_position[3], "try_errors")] == ["reset", "no"]

    # A trigger's binary payload reaches the worker byte for byte.
    raw = b"\x00\xffnot json"
    other: str = grpcurl_call(
        address, TRIGGER, {"task_id": "rules", "payload": json_out(raw, "binary/plain")}
    )["run"]["id"]
    polled = grpcurl_call(
        address,
        "cairn.v1.WorkerService/PollAttempt",
        {"worker_id": WORKER, "task_ids": ["rules"], "wait": "10s"},
    )
    (assignment,) = polled["assignments"]
    assert json_field(assignment, "run_id") == other
    assert base64.b64decode(assignment["payload"]["data"]) == raw
    assert json_field(assignment["payload"], "encoding") == "binary/plain"


# ---- D8: why an attempt is gone, as trailing metadata --------------------------------


def attempt_gone(address: str, method: str, data: dict[str, Any]) -> str:
    """The value of "cairn-attempt-gone" grpcurl -v prints among the trailers of
    a FAILED_PRECONDITION ("" when there is none)."""
    key = ["-H", f"{keys.AUTHORIZATION}: {keys.BEARER}{auth.ADMIN_KEY}"]  # the session's, as grpcurl_call
    argv = [GRPCURL, "-plaintext", *key, "-v", "-d", json.dumps(data), address, method]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=40)
    assert proc.returncode != 0, proc.stdout
    output = proc.stdout + proc.stderr
    assert "Code: FailedPrecondition" in output, output
    trailers = output.split("Response trailers received:", 1)
    assert len(trailers) == 2, f"no trailers printed: {output}"
    for line in trailers[1].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cairn-attempt-gone":
            return value.strip()
    return ""


@pytest.mark.cluster_options(lease_seconds=3)
def test_attempt_gone_reaches_a_grpcurl_client_as_trailing_metadata(cluster: Cluster) -> None:
    address = cluster.address
    register_retried = {
        "worker_id": WORKER,
        "version": "grpcurl-1",
        "slots": 10,
        "tasks": [
            {"task_id": "gone", "retry": {"max_attempts": 1}},
            {
                "task_id": "gone-retried",
                "retry": {"max_attempts": 3, "min_timeout": "0.1s", "max_timeout": "0.1s"},
            },
        ],
    }
    grpcurl_call(address, "cairn.v1.WorkerService/RegisterWorker", register_retried)

    # canceled: the run was canceled while its attempt ran
    canceled = start_run(address, "gone")
    grpcurl_call(address, "cairn.v1.RunService/CancelRun", {"run_id": canceled, "reason": "test"})
    assert attempt_gone(address, RECORD, step(canceled, 0)) == "canceled"
    assert attempt_gone(address, HEARTBEAT, attempt_1(canceled)) == "canceled"

    # ended: the attempt already finished
    ended = start_run(address, "gone")
    grpcurl_call(
        address,
        FINISH,
        {**attempt_1(ended), "outcome": "ATTEMPT_OUTCOME_COMPLETED", "output": json_out("1")},
    )
    assert attempt_gone(address, RECORD, step(ended, 0)) == "ended"

    # timed_out: the run exceeded its max_duration
    timed_out = start_run(address, "gone", {"max_duration": "1s"})
    wait_for(
        lambda: grpcurl_call(address, GET, {"run_id": timed_out})["run"]["status"] == "RUN_STATUS_TIMED_OUT",
        timeout=20,
        message="the run did not time out",
    )
    assert attempt_gone(address, RECORD, step(timed_out, 0)) == "timed_out"

    # superseded: the attempt's lease expired (no heartbeat) and the run retries
    superseded = start_run(address, "gone-retried")
    wait_for(
        lambda: (
            grpcurl_call(address, GET, {"run_id": superseded})["run"]["attempts"][0]["status"]
            != "ATTEMPT_STATUS_EXECUTING"
        ),
        timeout=30,
        interval=0.2,
        message="the attempt's lease did not expire",
    )
    assert attempt_gone(address, HEARTBEAT, attempt_1(superseded)) == "superseded"

    # BatchWrite carries the same, per write, as WriteError.attempt_gone
    answer = grpcurl_call(
        address, BATCH, {"writes": [{"record_step": step(canceled, 0)}, {"record_step": step(ended, 0)}]}
    )
    results = answer["results"]
    assert [json_field(r["error"], "attempt_gone") for r in results] == [
        "ATTEMPT_GONE_CANCELED",
        "ATTEMPT_GONE_ENDED",
    ], results
