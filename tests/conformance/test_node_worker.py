"""Protocol conformance: a worker and a client in Node.js, written from
proto/cairn/v1 alone (tests/conformance/node: @grpc/grpc-js and
@grpc/proto-loader loading the .proto files at run time, no generated code, no
Python), against a real cluster (history, matching, frontend, PostgreSQL, NATS).

Each test starts the Node worker (worker.js, its tasks named node-*), triggers
through the Node client (client.js) and reads the run back through it; what the
worker did (steps run, replayed, recorded; attempts suspended, gone, finished) is
read from the JSON lines it prints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from harness import Cluster
from node_helpers import (
    NodeRpcError,
    NodeWorker,
    await_status,
    get_run,
    node_client,
    steps_of,
    trigger,
    wait_run,
)

JSON = "json/plain"
CHILD_RESULTS = "proto/cairn.v1.ChildResults"
StartWorker = Callable[..., NodeWorker]


def timestamp(value: dict[str, Any]) -> datetime:
    """A google.protobuf.Timestamp as proto-loader prints it ({seconds, nanos})."""
    return datetime.fromtimestamp(int(value["seconds"]) + value["nanos"] / 1e9, UTC)


def attempt_statuses(run: dict[str, Any]) -> list[str]:
    return [a["status"] for a in run["attempts"]]


def ran(worker: NodeWorker, run_id: str, name: str) -> int:
    """How often the worker ran the body of step `name` of run_id (all attempts)."""
    return len(worker.events("step_ran", run_id=run_id, name=name))


def suspended(worker: NodeWorker, run_id: str, attempt: int = 1) -> dict[str, Any]:
    """The worker's report of the attempt's FinishAttempt(SUSPENDED), once sent."""
    finished = worker.wait_event("attempt_finished", run_id=run_id, attempt=attempt)
    assert finished["outcome"] == "ATTEMPT_OUTCOME_SUSPENDED", finished
    return finished


# ---- steps and in-place retries -------------------------------------------------------


def test_steps_are_recorded_in_order_with_their_outputs(cluster: Cluster, node_worker: StartWorker) -> None:
    worker = node_worker("node-steps")
    run_id = trigger(cluster, "node-steps", {"x": 7})

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"] == {
        "encoding": JSON,
        "value": {"sum": 17, "product": 34, "text": "sum=17 product=34", "nothing": None},
    }
    assert run["input"]["value"] == {"x": 7}
    assert steps_of(run) == [
        (0, "add", "STEP_STATUS_COMPLETED", 1),
        (1, "multiply", "STEP_STATUS_COMPLETED", 1),
        (2, "describe", "STEP_STATUS_COMPLETED", 1),
        (3, "nothing", "STEP_STATUS_COMPLETED", 1),
    ]
    assert [s["output"] for s in run["steps"]] == [
        {"encoding": JSON, "value": 17},
        {"encoding": JSON, "value": 34},
        {"encoding": JSON, "value": "sum=17 product=34"},
        {"encoding": JSON, "value": None},  # JSON null: the 4 bytes `null`
    ]
    assert [(s["tries"], s["try_errors"]) for s in run["steps"]] == [(1, [])] * 4
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_COMPLETED"]
    assert run["attempts"][0]["worker_id"].startswith("node-worker-1-")
    assert run["attempts"][0]["worker_version"] == "node-conformance-1"
    finished = worker.wait_event("attempt_finished", run_id=run_id)
    assert finished["run_status"] == "RUN_STATUS_COMPLETED"


def test_in_place_retries_record_tries_and_the_failed_tries_errors(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-retries")
    run_id = trigger(cluster, "node-retries", {})

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"] == {
        "flaky": "ok on try 3",
        "hopeless": {"type": "QuotaError", "message": "quota exceeded on try 2"},
    }
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_COMPLETED"], "retried in place, not as attempts"
    flaky, hopeless = run["steps"]
    assert (flaky["name"], flaky["status"], flaky["tries"]) == ("flaky", "STEP_STATUS_COMPLETED", 3)
    assert flaky["output"]["value"] == "ok on try 3"
    assert [(e["type"], e["message"]) for e in flaky["try_errors"]] == [
        ("Error", "try 1 failed"),
        ("Error", "try 2 failed"),
    ]
    assert all("worker.js" in e["stack_trace"] for e in flaky["try_errors"])
    assert (hopeless["name"], hopeless["status"], hopeless["tries"]) == ("hopeless", "STEP_STATUS_FAILED", 2)
    assert (hopeless["error"]["type"], hopeless["error"]["message"]) == (
        "QuotaError",
        "quota exceeded on try 2",
    )
    assert [(e["type"], e["message"]) for e in hopeless["try_errors"]] == [
        ("QuotaError", "quota exceeded on try 1")
    ]
    assert ran(worker, run_id, "flaky") == 3
    assert ran(worker, run_id, "hopeless") == 2


# ---- crash recovery ---------------------------------------------------------------------


@pytest.mark.cluster_options(lease_seconds=2)
def test_replay_after_kill_9_does_not_run_a_recorded_step_again(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-crash")
    run_id = trigger(cluster, "node-crash", {})
    worker.wait_event("blocking", run_id=run_id, attempt=1)
    worker.wait_event("step_recorded", run_id=run_id, name="first")
    worker.kill()  # SIGKILL in the middle of step "second"

    worker.start()  # the same worker program again: a new process, a new registration
    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"] == {"first": "first done", "second": "second done"}
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_CRASHED", "ATTEMPT_STATUS_COMPLETED"]
    assert steps_of(run) == [
        (0, "first", "STEP_STATUS_COMPLETED", 1),
        (1, "second", "STEP_STATUS_COMPLETED", 2),
    ]
    started = worker.wait_event("attempt_started", run_id=run_id, attempt=2)
    assert started["journal"] == [{"position": 0, "name": "first"}]
    assert worker.events("step_replayed", run_id=run_id, attempt=2, name="first")
    assert ran(worker, run_id, "first") == 1, "a recorded step ran again after the crash"
    assert ran(worker, run_id, "second") == 2  # unrecorded when the worker died: runs again


# ---- durable waits ---------------------------------------------------------------------


def test_sleep_is_a_wait_recorded_by_history_and_replayed_past(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-sleep")
    run_id = trigger(cluster, "node-sleep", {"ms": 2000})
    finished = suspended(worker, run_id)
    assert finished["wait"] == {"position": 1, "name": "wait.sleep"}
    assert finished["run_status"] == "RUN_STATUS_WAITING"
    waiting = get_run(cluster, run_id)
    assert waiting["status"] == "RUN_STATUS_WAITING"
    assert (waiting["wait"]["kind"], waiting["wait"]["position"]) == ("sleep", 1)
    until = timestamp(waiting["wait"]["until"])

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert steps_of(run) == [
        (0, "before", "STEP_STATUS_COMPLETED", 1),
        (1, "wait.sleep", "STEP_STATUS_COMPLETED", 1),  # recorded by history for the suspended attempt
        (2, "after", "STEP_STATUS_COMPLETED", 2),
    ]
    slept = run["steps"][1]
    assert slept["output"]["encoding"] == JSON
    woke = slept["output"]["value"]
    assert isinstance(woke, str) and woke.endswith("Z"), woke  # RFC 3339, UTC
    assert datetime.fromisoformat(woke) == until
    assert timestamp(slept["recorded_at"]) >= until
    assert run["output"]["value"] == {"before": "before", "woke": woke, "after": "after"}
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_SUSPENDED", "ATTEMPT_STATUS_COMPLETED"]
    assert worker.events("step_replayed", run_id=run_id, attempt=2, name="wait.sleep")
    assert ran(worker, run_id, "before") == 1
    assert len(worker.events("attempt_started", run_id=run_id)) == 2, "the sleep was reached again"


def test_event_wait_resumes_with_the_events_payload(cluster: Cluster, node_worker: StartWorker) -> None:
    worker = node_worker("node-event")
    run_id = trigger(cluster, "node-event", {"key": "order-1"})
    finished = suspended(worker, run_id)
    assert finished["wait"] == {"position": 1, "name": "wait.for_event"}
    assert finished["run_status"] == "RUN_STATUS_WAITING"
    wait = get_run(cluster, run_id)["wait"]
    assert (wait["kind"], wait["position"], wait["event_name"], wait["event_key"]) == (
        "event",
        1,
        "approval",
        "order-1",
    )

    other_key = node_client(
        cluster, "send-event", name="approval", key="order-2", payload={"approved": False}
    )
    assert other_key["delivered_run_ids"] == []
    sent = node_client(cluster, "send-event", name="approval", key="order-1", payload={"approved": True})
    assert sent["delivered_run_ids"] == [run_id]

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"] == {
        "prepared": "prepared order-1",
        "event": {"approved": True},
        "after": "after",
    }
    assert steps_of(run) == [
        (0, "prepare", "STEP_STATUS_COMPLETED", 1),
        (1, "wait.for_event", "STEP_STATUS_COMPLETED", 1),
        (2, "after", "STEP_STATUS_COMPLETED", 2),
    ]
    assert run["steps"][1]["output"] == {"encoding": JSON, "value": {"approved": True}}
    assert ran(worker, run_id, "prepare") == 1


def test_an_event_sent_before_the_wait_is_buffered_and_resolves_it_at_once(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-event")
    run_id = trigger(cluster, "node-event", {"key": "order-3", "gate": True})
    worker.wait_event("gate_waiting", run_id=run_id, gate="wait")

    sent = node_client(
        cluster, "send-event", run_id=run_id, name="approval", key="order-3", payload={"early": True}
    )
    assert sent["buffered"] is True and sent["delivered_run_ids"] == [], sent
    worker.open_gate(run_id, "wait")

    finished = suspended(worker, run_id)
    assert finished["run_status"] == "RUN_STATUS_QUEUED", "resolved at once by the buffered event"
    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"]["event"] == {"early": True}


def test_token_wait_resumes_with_the_completion_payload(cluster: Cluster, node_worker: StartWorker) -> None:
    worker = node_worker("node-token")
    run_id = trigger(cluster, "node-token", {})
    finished = suspended(worker, run_id)
    assert finished["wait"] == {"position": 1, "name": "wait.for_token"}
    run = get_run(cluster, run_id)
    token_id = run["steps"][0]["output"]["value"]
    assert (run["wait"]["kind"], run["wait"]["position"], run["wait"]["token_id"]) == ("token", 1, token_id)
    token = node_client(cluster, "get-token", token_id=token_id)["token"]
    assert (token["status"], token["run_id"]) == ("WAIT_TOKEN_STATUS_PENDING", run_id)

    completed = node_client(cluster, "complete-token", token_id=token_id, payload={"approved_by": "node"})
    assert completed["token"]["status"] == "WAIT_TOKEN_STATUS_COMPLETED"

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"] == {"token_id": token_id, "value": {"approved_by": "node"}}
    assert steps_of(run) == [
        (0, "wait.create_token", "STEP_STATUS_COMPLETED", 1),
        (1, "wait.for_token", "STEP_STATUS_COMPLETED", 1),
    ]
    assert ran(worker, run_id, "wait.create_token") == 1
    with pytest.raises(NodeRpcError) as again:
        node_client(cluster, "complete-token", token_id=token_id, payload={})
    assert again.value.error["code_name"] == "FAILED_PRECONDITION"


def test_children_wait_resolves_to_child_results(cluster: Cluster, node_worker: StartWorker) -> None:
    worker = node_worker("node-parent", "node-double", "node-boom")
    run_id = trigger(cluster, "node-parent", {})
    finished = suspended(worker, run_id)
    assert finished["wait"] == {"position": 0, "name": "wait.children"}

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    children = run["child_run_ids"]
    assert len(children) == 3
    results = run["output"]["value"]["results"]
    assert [r["run_id"] for r in results] == children, "results in the order of ChildrenWait.runs"
    assert [r["status"] for r in results] == [
        "RUN_STATUS_COMPLETED",
        "RUN_STATUS_COMPLETED",
        "RUN_STATUS_FAILED",
    ]
    assert [r["output"] for r in results[:2]] == [{"doubled": 2}, {"doubled": 42}]
    assert [r["output_encoding"] for r in results[:2]] == [JSON, JSON]
    assert results[2]["output"] is None
    assert results[2]["error"] == {
        "type": "ChildBoom",
        "message": "the child went boom",
        "non_retryable": True,
    }

    waited = run["steps"][0]
    assert (waited["name"], waited["status"], waited["attempt"]) == (
        "wait.children",
        "STEP_STATUS_COMPLETED",
        1,
    )
    assert waited["output"]["encoding"] == CHILD_RESULTS  # decoded by client.js with protobufjs
    assert [(r["run_id"], r["status"]) for r in waited["output"]["value"]] == [
        (r["run_id"], r["status"]) for r in results
    ]
    for child_id in children:
        assert get_run(cluster, child_id)["parent_run_id"] == run_id


# ---- cancel, non-determinism, idempotency -------------------------------------------------


def test_cancel_of_an_executing_run_reaches_the_worker_as_attempt_gone(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-cancel")
    run_id = trigger(cluster, "node-cancel", {})
    worker.wait_event("blocking", run_id=run_id)

    canceled = node_client(cluster, "cancel", run_id=run_id, reason="conformance")
    assert canceled["run"]["status"] == "RUN_STATUS_CANCELED"
    # Its next heartbeat (or step) is refused: FAILED_PRECONDITION with the
    # trailing metadata cairn-attempt-gone: canceled.
    gone = worker.wait_event("attempt_gone", run_id=run_id, timeout=15)
    assert gone["reason"] == "canceled", gone
    assert gone["via"] in ("heartbeat", "record_step")
    worker.wait_event("attempt_abandoned", run_id=run_id)

    run = get_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_CANCELED"
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_CANCELED"]
    assert steps_of(run) == [(0, "started", "STEP_STATUS_COMPLETED", 1)], "nothing recorded after the cancel"
    assert not worker.events("attempt_finished", run_id=run_id)


# A long lease: with no heartbeats the attempt must stay current until the test
# cancels it, so that its step write, not a lease expiry, is what is refused.
@pytest.mark.cluster_options(lease_seconds=30)
def test_cancel_reaches_a_worker_without_heartbeats_through_its_next_step(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-cancel", env={"CONFORMANCE_HEARTBEAT": "off"})
    run_id = trigger(cluster, "node-cancel", {})
    worker.wait_event("blocking", run_id=run_id)

    node_client(cluster, "cancel", run_id=run_id, reason="conformance")
    worker.open_gate(run_id, "release")  # the step returns; its RecordStep is refused
    gone = worker.wait_event("attempt_gone", run_id=run_id)
    assert (gone["reason"], gone["via"]) == ("canceled", "record_step"), gone
    worker.wait_event("attempt_abandoned", run_id=run_id)
    assert not worker.events("heartbeat_error") and not worker.events("record_error")

    run = get_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_CANCELED"
    assert steps_of(run) == [(0, "started", "STEP_STATUS_COMPLETED", 1)]


def test_a_replay_that_meets_another_step_name_fails_the_run_non_retryably(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-nondet")
    run_id = trigger(cluster, "node-nondet", {})

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_FAILED"
    assert run["attempt_count"] == 2, "no third attempt after the non-deterministic one"
    assert attempt_statuses(run) == ["ATTEMPT_STATUS_FAILED", "ATTEMPT_STATUS_FAILED"]
    error = run["error"]
    assert (error["type"], error["non_retryable"]) == ("NonDeterminismError", True)
    assert "v1-charge" in error["message"] and "v2-refund" in error["message"]
    assert steps_of(run) == [(0, "v1-charge", "STEP_STATUS_COMPLETED", 1)]
    assert ran(worker, run_id, "v2-refund") == 0, "the mismatched step must not run"


def test_a_second_trigger_with_the_same_idempotency_key_returns_the_first_run(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    worker = node_worker("node-idempotent")
    first = node_client(
        cluster, "trigger", task_id="node-idempotent", payload={"order": "A-1"}, idempotency_key="k1"
    )
    run_id = first["run"]["id"]
    assert first["existing"] is False
    second = node_client(
        cluster, "trigger", task_id="node-idempotent", payload={"order": "B-2"}, idempotency_key="k1"
    )
    assert second["existing"] is True
    assert second["run"]["id"] == run_id
    assert second["run"]["input"] == {"encoding": JSON, "value": {"order": "A-1"}}, (
        "the first run's own input"
    )

    run = wait_run(cluster, run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED", run["error"]
    assert run["output"]["value"] == {"order": "A-1"}
    third = node_client(
        cluster, "trigger", task_id="node-idempotent", payload={"order": "C-3"}, idempotency_key="k1"
    )
    assert (third["existing"], third["run"]["id"], third["run"]["status"]) == (
        True,
        run_id,
        "RUN_STATUS_COMPLETED",
    )

    other = trigger(cluster, "node-idempotent", {"order": "D-4"}, idempotency_key="k2")
    assert other != run_id
    await_status(cluster, other, "RUN_STATUS_COMPLETED")
    assert len(worker.events("attempt_started", task_id="node-idempotent")) == 2, "one run per key"
    assert ran(worker, run_id, "charge") == 1


def test_a_trigger_sent_again_with_its_request_id_answers_the_first_run(
    cluster: Cluster, node_worker: StartWorker
) -> None:
    """TriggerRunRequest.request_id, set by a client written from the protos: a
    trigger sent again (as after a lost answer) answers the run it made, and a
    request id that is not 1-64 letters, digits, '-', '_', '.', ':' is
    INVALID_ARGUMENT naming the field."""
    node_worker("node-idempotent")
    request_id = "2b7e1c8e-5a3f-4d1e-9c0a-7f6b5e4d3c2b"
    first = node_client(
        cluster, "trigger", task_id="node-idempotent", payload={"order": "R-1"}, request_id=request_id
    )
    again = node_client(
        cluster, "trigger", task_id="node-idempotent", payload={"order": "R-1"}, request_id=request_id
    )
    assert (first["existing"], again["existing"]) == (False, True)
    assert again["run"]["id"] == first["run"]["id"]
    assert wait_run(cluster, first["run"]["id"])["status"] == "RUN_STATUS_COMPLETED"
    with pytest.raises(NodeRpcError) as refused:
        node_client(cluster, "trigger", task_id="node-idempotent", payload={}, request_id="not a request id")
    assert refused.value.error["code_name"] == "INVALID_ARGUMENT"
    assert refused.value.error["details"].startswith("request_id: "), refused.value.error
