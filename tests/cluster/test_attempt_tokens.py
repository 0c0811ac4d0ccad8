"""A worker of namespace A cannot record a step or finish an attempt given to
another worker (issue 14), against a real cluster: a real worker
(`cairn worker tests.apps.fault_tasks`) runs a run that holds inside its first
step; a second caller with a valid worker key of the same namespace, knowing
only the run id and attempt number (read from GetRun), and even holding a
genuine attempt token of its own, tries every write of the attempt
(Heartbeat, RecordStep, UpdateRunMetadata, AppendRunOutput, FinishAttempt, and
a BatchWrite of them): each is refused PERMISSION_DENIED (a missing token
INVALID_ARGUMENT), nothing is written, and the real worker still finishes the
run with its own result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from fault_helpers import APP, attempts_of, fx_env, output_of, steps_of
from google.protobuf.struct_pb2 import Struct
from harness import Cluster, expect_rpc_error, json_payload, seconds, table_counts, wait_for, wait_registered

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc

NAMESPACE = "default"  # namespace A: the real worker's and the intruder's
INTRUDER = "intruder-worker"
INTRUDER_TASK = "intruder-task"
RPC_TIMEOUT = 10.0
DENIED = grpc.StatusCode.PERMISSION_DENIED


def worker_key(cluster: Cluster) -> str:
    """A new worker key of the namespace, made with the session's admin key."""
    made = kgrpc.KeyServiceStub(cluster.channel()).CreateKey(
        kpb.CreateKeyRequest(namespace=NAMESPACE, role=kpb.KEY_ROLE_WORKER, name="intruder"),
        timeout=RPC_TIMEOUT,
    )
    return str(made.secret)


def own_assignment(cluster: Cluster, intruder: Any) -> wpb.AttemptAssignment:
    """An attempt handed to the intruder itself (a run of its own task): a genuine token, not the victim's."""
    task = wpb.TaskDefinition(task_id=INTRUDER_TASK, retry=cpb.RetryPolicy(max_attempts=1))
    intruder.RegisterWorker(
        wpb.RegisterWorkerRequest(worker_id=INTRUDER, version="1", tasks=[task], slots=1), timeout=RPC_TIMEOUT
    )
    runs = rgrpc.RunServiceStub(cluster.channel())
    runs.TriggerRun(
        rpb.TriggerRunRequest(task_id=INTRUDER_TASK, payload=json_payload(1)), timeout=RPC_TIMEOUT
    )
    polled = intruder.PollAttempt(
        wpb.PollAttemptRequest(worker_id=INTRUDER, task_ids=[INTRUDER_TASK], wait=seconds(10)), timeout=30
    )
    (assignment,) = polled.assignments
    return assignment


def writes(run_id: str, attempt: int, token: str) -> dict[str, tuple[str, Any]]:
    """Every write of an attempt, carrying `token`: name -> (method, request)."""
    ref = {"run_id": run_id, "attempt": attempt, "attempt_token": token}
    forged = json_payload({"forged": True})
    metadata = Struct()
    metadata.update({"forged": True})
    line = wpb.RunOutput(log=cpb.LogLine(level="INFO", message="forged", step_position=-1))
    step = {"status": cpb.STEP_STATUS_COMPLETED, "output": forged, "tries": 1}
    record_next = wpb.RecordStepRequest(**ref, position=1, name="forged", **step)
    complete = wpb.FinishAttemptRequest(**ref, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED, output=forged)
    append = wpb.AppendRunOutputRequest(**ref, outputs=[line])
    return {
        "Heartbeat": ("Heartbeat", wpb.HeartbeatRequest(**ref)),
        "RecordStep(the held position)": (
            "RecordStep",
            wpb.RecordStepRequest(**ref, position=0, name="hold", **step),
        ),
        "RecordStep(the next position)": ("RecordStep", record_next),
        "UpdateRunMetadata": ("UpdateRunMetadata", wpb.UpdateRunMetadataRequest(**ref, metadata=metadata)),
        "AppendRunOutput": ("AppendRunOutput", append),
        "FinishAttempt(completed)": ("FinishAttempt", complete),
        "FinishAttempt(failed)": (
            "FinishAttempt",
            wpb.FinishAttemptRequest(
                **ref,
                outcome=wpb.ATTEMPT_OUTCOME_FAILED,
                error=cpb.ErrorInfo(type="Forged", non_retryable=True),
            ),
        ),
        "BatchWrite": (
            "BatchWrite",
            wpb.BatchWriteRequest(
                writes=[
                    wpb.AttemptWrite(record_step=record_next),
                    wpb.AttemptWrite(append_run_output=append),
                    wpb.AttemptWrite(finish_attempt=complete),
                ]
            ),
        ),
    }


@pytest.mark.cluster_options(lease_seconds=10)
def test_another_worker_of_the_namespace_cannot_write_to_an_attempt_it_was_not_given(
    cluster: Cluster, fx_dir: Path
) -> None:
    real = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=real)
    runs = rgrpc.RunServiceStub(cluster.channel())
    run_id = runs.TriggerRun(
        rpb.TriggerRunRequest(task_id="fault-fenced", payload=json_payload({"tag": "mine"})),
        timeout=RPC_TIMEOUT,
    ).run.id
    wait_for(lambda: (fx_dir / f"held-{run_id}").exists(), 15, message="the run never reached its step")

    # The intruder: a valid worker key of the same namespace, an attempt of its
    # own, and what GetRun shows of the victim's run.
    intruder = wgrpc.WorkerServiceStub(cluster.channel(key=worker_key(cluster)))
    own = own_assignment(cluster, intruder)
    shown = runs.GetRun(rpb.GetRunRequest(run_id=run_id), timeout=RPC_TIMEOUT).run
    assert shown.status == cpb.RUN_STATUS_EXECUTING
    attempt = shown.attempt_count
    assert [a.number for a in shown.attempts] == [attempt] == [1]
    assert own.attempt_token and own.attempt_token not in str(shown)  # GetRun never shows a token

    before = table_counts(cluster)
    run_before = cluster.sql(
        "SELECT status, metadata, log_lines, attempt_count FROM runs WHERE id = $1::uuid", run_id
    )

    def nothing_written(what: str) -> None:
        assert table_counts(cluster) == before, f"{what} wrote rows"
        assert (
            cluster.sql(
                "SELECT status, metadata, log_lines, attempt_count FROM runs WHERE id = $1::uuid", run_id
            )
            == run_before
        ), f"{what} changed the run"
        assert steps_of(cluster, run_id) == [], f"{what} recorded a step"

    guesses = {
        "its own attempt's token": own.attempt_token,
        "a made-up token": "A" * 32,
    }
    for guess, token in guesses.items():
        for what, (method, request) in writes(run_id, attempt, token).items():
            call: Callable[[], Any] = lambda m=method, r=request: getattr(intruder, m)(r, timeout=RPC_TIMEOUT)  # noqa: E731
            if method == "BatchWrite":
                results = call().results
                assert [r.error.code for r in results] == [DENIED.value[0]] * 3, (guess, results)
                message = results[0].error.message
            else:
                message = expect_rpc_error(call, DENIED, "attempt_token")
            assert f"attempt {attempt} of run {run_id}" in message, message
            assert token not in message
            nothing_written(f"{what} with {guess}")
            print(f"refused: {what} with {guess}: {message}")
    for what, (method, request) in writes(run_id, attempt, "").items():
        if method != "BatchWrite":
            expect_rpc_error(
                lambda m=method, r=request: getattr(intruder, m)(r, timeout=RPC_TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT,
                "attempt_token",
            )
            nothing_written(f"{what} without a token")

    # The intruder's token opens its own attempt, and only that one.
    finished = intruder.FinishAttempt(
        wpb.FinishAttemptRequest(
            run_id=own.run_id,
            attempt=own.attempt,
            attempt_token=own.attempt_token,
            outcome=wpb.ATTEMPT_OUTCOME_COMPLETED,
            output=json_payload("its own"),
        ),
        timeout=RPC_TIMEOUT,
    )
    assert finished.run_status == cpb.RUN_STATUS_COMPLETED

    # The real worker goes on: its heartbeats kept the lease, its step records, its run completes.
    (fx_dir / f"go-hold-{run_id}").touch()
    done = runs.WaitRun(rpb.WaitRunRequest(run_id=run_id, timeout=seconds(30)), timeout=40).run
    assert done.status == cpb.RUN_STATUS_COMPLETED, done
    assert output_of(cluster, run_id) == {
        "step": {"tag": "mine", "attempt": 1, "pid": real.pid},
        "attempt": 1,
        "pid": real.pid,
    }
    assert [(s["position"], s["name"], s["attempt"]) for s in steps_of(cluster, run_id)] == [(0, "hold", 1)]
    assert [(a["number"], a["status"]) for a in attempts_of(cluster, run_id)] == [(1, "completed")]
    assert cluster.sql_value("SELECT metadata::text FROM runs WHERE id = $1::uuid", run_id) == "{}"
    assert (
        cluster.sql_value("SELECT count(*) FROM run_events WHERE run_id = $1::uuid AND type = 'log'", run_id)
        == 0
    )
