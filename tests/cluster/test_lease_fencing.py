"""Fencing with real processes: a worker frozen (SIGSTOP) past its lease loses
its attempt to a new one on another worker; woken up (SIGCONT), it records
nothing, and every write of the stale attempt (RecordStep, Heartbeat,
FinishAttempt) is refused with FAILED_PRECONDITION (DESIGN.md, "Invariants the
tests must prove", 1).

The tasks are in tests/apps/fault_tasks.py; their side effects, markers and
go-files are read with fault_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fault_helpers import APP, attempts_of, count, error_type, fx_env, output_of, run_status, steps_of
from harness import Cluster, wait_for, wait_registered

from cairn import error_types, payloads
from cairn.v1 import common_pb2, worker_service_pb2, worker_service_pb2_grpc
from worker_sdk import Client

SUPERSEDED_WORDS = ("superseded", "abandon", "FAILED_PRECONDITION")


# ---- fencing: a worker frozen past its lease cannot record anything ------------


def test_sigstopped_worker_is_fenced_after_its_lease_expires(cluster: Cluster, fx_dir: Path) -> None:
    # One slot: while A runs the attempt it has no poll outstanding, so the retry
    # cannot be handed to the frozen process.
    a = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=a)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-fenced", {"tag": "t1"}).id
    wait_for(lambda: (fx_dir / f"held-{run_id}").exists(), 10, message="attempt 1 never reached its step")
    a.pause()
    b = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=cluster.lease_seconds + 15)
    assert run.status == "completed", run
    assert run.output == {"step": {"tag": "t1", "attempt": 2, "pid": b.pid}, "attempt": 2, "pid": b.pid}

    # Let A's step finish, then wake A: it is long past its lease.
    a_log_before = len(a.log_text())
    (fx_dir / f"go-hold-{run_id}").touch()
    a.resume()

    def a_gave_up() -> str | None:
        new = a.log_text()[a_log_before:]
        hits = [
            line
            for line in new.splitlines()
            if any(word in line for word in SUPERSEDED_WORDS) and run_id in line
        ]
        return "\n".join(hits) if hits else None

    wait_for(a_gave_up, 10, message="A never reported abandoning its stale attempt")
    # The SDK's last word on the attempt ("... its result is discarded" or "... refused
    # its finish"): after it, A does nothing more for this attempt.
    wait_for(
        lambda: any(w in a.log_text()[a_log_before:] for w in ("discarded", "refused")),
        10,
        message="A never finished with its stale attempt",
    )
    print(f"\nworker A after SIGCONT:\n{a_gave_up()}")
    # A's attempt must never get past its step (its result is refused or discarded)...
    assert count(fx_dir, "task-done", run_id, 1) == 0
    assert a.running, f"worker A died:\n{a.log_tail(40)}"
    print(f"A's step body finished after SIGCONT: {count(fx_dir, 'hold-done', run_id, 1)} time(s)")

    # ... and nothing it sent was applied.
    assert run_status(cluster, run_id) == "completed"
    assert output_of(cluster, run_id)["pid"] == b.pid
    atts = attempts_of(cluster, run_id)
    assert [(x["number"], x["status"]) for x in atts] == [(1, "crashed"), (2, "completed")]
    assert error_type(atts[0]["error"]) == error_types.LEASE_EXPIRED
    assert [(s["position"], s["name"], s["attempt"]) for s in steps_of(cluster, run_id)] == [(0, "hold", 2)]
    assert (
        cluster.sql_value(
            "SELECT count(*) FROM run_events WHERE run_id = $1::uuid "
            "AND attempt = 1 AND type = 'step_recorded'",
            run_id,
        )
        == 0
    )
    assert count(fx_dir, "hold-done", run_id, 2) == 1
    assert count(fx_dir, "task-done", run_id) == 1

    # The protocol refuses every write of the stale attempt, whatever it says, even
    # with the attempt's own token (A's, read from the database).
    token = cluster.sql_value("SELECT token FROM attempts WHERE run_id = $1::uuid AND number = 1", run_id)
    stub = worker_service_pb2_grpc.WorkerServiceStub(cluster.channel())
    out = common_pb2.Payload(data=payloads.encode_json({"stale": True}), encoding=payloads.JSON)
    stale_writes = {
        "RecordStep(new position)": (
            stub.RecordStep,
            worker_service_pb2.RecordStepRequest(
                run_id=run_id,
                attempt=1,
                attempt_token=token,
                position=1,
                name="later",
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=out,
                tries=1,
            ),
        ),
        "RecordStep(recorded position)": (
            stub.RecordStep,
            worker_service_pb2.RecordStepRequest(
                run_id=run_id,
                attempt=1,
                attempt_token=token,
                position=0,
                name="hold",
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=out,
                tries=1,
            ),
        ),
        "Heartbeat": (
            stub.Heartbeat,
            worker_service_pb2.HeartbeatRequest(run_id=run_id, attempt=1, attempt_token=token),
        ),
        "FinishAttempt": (
            stub.FinishAttempt,
            worker_service_pb2.FinishAttemptRequest(
                run_id=run_id,
                attempt=1,
                attempt_token=token,
                outcome=worker_service_pb2.ATTEMPT_OUTCOME_COMPLETED,
                output=out,
            ),
        ),
    }
    for what, (method, request) in stale_writes.items():
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (
            f"{what} of the stale attempt: {err.value.code()} {err.value.details()}"
        )
    assert run_status(cluster, run_id) == "completed"
    assert output_of(cluster, run_id)["pid"] == b.pid
    assert len(steps_of(cluster, run_id)) == 1
    assert [(x["number"], x["status"]) for x in attempts_of(cluster, run_id)] == [
        (1, "crashed"),
        (2, "completed"),
    ]
