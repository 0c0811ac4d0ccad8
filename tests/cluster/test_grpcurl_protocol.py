"""The public API from any language, with grpcurl, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): grpcurl as a client
(reflection, health, TriggerRun, WaitRun, GetRun), and as a worker in no
particular language (RegisterWorker, PollAttempt, RecordStep, Heartbeat,
FinishAttempt).

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks` (api_helpers.py starts them).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from api_helpers import JSON, start_basic_worker
from harness import Cluster, b64_json, grpcurl, grpcurl_call, json_field


def decode_b64_json(data: str | None) -> Any:
    return json.loads(base64.b64decode(data or "")) if data else None


# ---- grpcurl as the client ------------------------------------------------------


def test_grpcurl_client_trigger_wait_reflection_and_health(cluster: Cluster) -> None:
    address = cluster.address
    listing = grpcurl(address, "list")
    assert listing.returncode == 0, listing.stderr
    services = set(listing.stdout.split())
    assert {"cairn.v1.RunService", "cairn.v1.WorkerService", "grpc.health.v1.Health"} <= services, (
        listing.stdout
    )

    health = grpcurl_call(address, "grpc.health.v1.Health/Check", {"service": ""})
    assert health.get("status") == "SERVING", health

    start_basic_worker(cluster)
    triggered = grpcurl_call(
        address,
        "cairn.v1.RunService/TriggerRun",
        {"task_id": "three-steps", "payload": {"data": b64_json({"x": 7}), "encoding": JSON}},
    )
    run = triggered["run"]
    run_id = run["id"]
    uuid.UUID(run_id)
    assert json_field(run, "task_id") == "three-steps"
    assert not json_field(triggered, "existing", False)
    assert "input" not in run  # the caller sent it: not echoed back (issue 10)

    waited = grpcurl_call(address, "cairn.v1.RunService/WaitRun", {"run_id": run_id, "timeout": "20s"})
    assert waited.get("done") is True, waited
    run = waited["run"]
    assert run["id"] == run_id
    assert decode_b64_json(run["input"]["data"]) == {"x": 7}
    assert run["status"] == "RUN_STATUS_COMPLETED", run
    assert decode_b64_json(run["output"]["data"]) == {"sum": 17, "product": 34, "text": "sum=17 product=34"}
    assert json_field(run["output"], "encoding") == JSON
    attempts = run["attempts"]
    assert len(attempts) == 1
    assert attempts[0]["number"] == 1
    assert attempts[0]["status"] == "ATTEMPT_STATUS_COMPLETED"
    assert json_field(attempts[0], "worker_id")
    steps = run["steps"]
    assert [s["name"] for s in steps] == ["add", "multiply", "describe"]
    assert [s["status"] for s in steps] == ["STEP_STATUS_COMPLETED"] * 3
    assert [s.get("attempt") for s in steps] == [1, 1, 1]
    assert [decode_b64_json(s["output"]["data"]) for s in steps] == [17, 34, "sum=17 product=34"]

    got = grpcurl_call(address, "cairn.v1.RunService/GetRun", {"run_id": run_id})
    assert got["run"]["status"] == "RUN_STATUS_COMPLETED"


# ---- a worker in no particular language --------------------------------------------


def test_language_neutral_protocol_with_grpcurl_as_the_worker(cluster: Cluster) -> None:
    address = cluster.address
    worker_id = "neutral-worker-1"
    registered = grpcurl_call(
        address,
        "cairn.v1.WorkerService/RegisterWorker",
        {
            "worker_id": worker_id,
            "version": "grpcurl-1",
            "slots": 1,
            "tasks": [{"task_id": "neutral", "retry": {"max_attempts": 1}}],
        },
    )
    assert registered == {}

    payload = {"hello": "from any language", "n": [1, 2, 3]}
    triggered = grpcurl_call(
        address,
        "cairn.v1.RunService/TriggerRun",
        {"task_id": "neutral", "payload": {"data": b64_json(payload), "encoding": JSON}},
    )
    run_id = triggered["run"]["id"]
    assert triggered["run"]["status"] == "RUN_STATUS_QUEUED"

    polled = grpcurl_call(
        address,
        "cairn.v1.WorkerService/PollAttempt",
        {"worker_id": worker_id, "task_ids": ["neutral"], "wait": "10s"},
    )
    assert len(polled.get("assignments", [])) == 1, f"not one assignment: {polled}"
    assignment = polled["assignments"][0]
    assert json_field(assignment, "run_id") == run_id
    assert assignment["attempt"] == 1
    assert json_field(assignment, "task_id") == "neutral"
    assert decode_b64_json(assignment["payload"]["data"]) == payload
    assert not assignment.get("steps"), "a first attempt has an empty journal"
    assert json_field(assignment, "lease_duration")
    token = json_field(assignment, "attempt_token")  # every write of the attempt carries it
    assert token

    step_output = {"step": "s1", "ok": True}
    recorded = grpcurl_call(
        address,
        "cairn.v1.WorkerService/RecordStep",
        {
            "run_id": run_id,
            "attempt": 1,
            "attempt_token": token,
            "position": 0,
            "name": "s1",
            "status": "STEP_STATUS_COMPLETED",
            "tries": 1,
            "output": {"data": b64_json(step_output), "encoding": JSON},
        },
    )
    assert recorded["step"]["name"] == "s1"
    assert recorded["step"]["status"] == "STEP_STATUS_COMPLETED"
    assert decode_b64_json(recorded["step"]["output"]["data"]) == step_output

    beat = grpcurl_call(
        address, "cairn.v1.WorkerService/Heartbeat", {"run_id": run_id, "attempt": 1, "attempt_token": token}
    )
    assert json_field(beat, "lease_expires_at"), beat

    output = {"result": "done by grpcurl", "total": 6}
    finished = grpcurl_call(
        address,
        "cairn.v1.WorkerService/FinishAttempt",
        {
            "run_id": run_id,
            "attempt": 1,
            "attempt_token": token,
            "outcome": "ATTEMPT_OUTCOME_COMPLETED",
            "output": {"data": b64_json(output), "encoding": JSON},
        },
    )
    assert json_field(finished, "run_status") == "RUN_STATUS_COMPLETED", finished

    run = grpcurl_call(address, "cairn.v1.RunService/GetRun", {"run_id": run_id})["run"]
    assert run["status"] == "RUN_STATUS_COMPLETED"
    assert decode_b64_json(run["output"]["data"]) == output
    assert len(run["steps"]) == 1
    step = run["steps"][0]
    assert step["name"] == "s1"
    assert step.get("position", 0) == 0
    assert step["status"] == "STEP_STATUS_COMPLETED"
    assert decode_b64_json(step["output"]["data"]) == step_output
    assert len(run["attempts"]) == 1
    attempt = run["attempts"][0]
    assert attempt["status"] == "ATTEMPT_STATUS_COMPLETED"
    assert json_field(attempt, "worker_id") == worker_id
    assert json_field(attempt, "worker_version") == "grpcurl-1"
