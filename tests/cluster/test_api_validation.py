"""Validation of bad input to the public API, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): every refused
RunService and WorkerService request (unknown or malformed ids, bad payloads,
stale attempts, bad retry policies, bad page sizes and tokens, ...) gets the
right status and a message naming the problem, through gRPC and the SDK's
exceptions, and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from api_helpers import JSON, RPC_TIMEOUT, register
from harness import (
    Cluster,
    assert_clean,
    expect_rpc_error,
    json_payload,
    run_stub,
    seconds,
    table_counts,
    worker_stub,
)

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc
from worker_sdk import Client, FailedPreconditionError, InvalidArgumentError, NotFoundError


def poll(
    wstub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str, task_id: str
) -> wpb.AttemptAssignment:
    response = wstub.PollAttempt(
        wpb.PollAttemptRequest(worker_id=worker_id, task_ids=[task_id], wait=seconds(10)), timeout=30
    )
    assert len(response.assignments) == 1, f"no attempt of {task_id} handed out within 10 s"
    return response.assignments[0]


# ---- bad input ------------------------------------------------------------------------


@pytest.mark.cluster_options(lease_seconds=60)
def test_bad_input_is_refused_with_the_right_status_and_nothing_written(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    # Fixtures over the protocol: a completed run, a queued run, an executing run.
    register(wstub, "bad-input-worker", "done-task", "parked-task", "live-task")
    done = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="done-task", payload=json_payload({"a": 1})), timeout=RPC_TIMEOUT
    ).run
    a = poll(wstub, "bad-input-worker", "done-task")
    assert a.run_id == done.id
    wstub.FinishAttempt(
        wpb.FinishAttemptRequest(
            run_id=done.id,
            attempt=1,
            attempt_token=a.attempt_token,
            outcome=wpb.ATTEMPT_OUTCOME_COMPLETED,
            output=json_payload("ok"),
        ),
        timeout=RPC_TIMEOUT,
    )
    parked = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="parked-task", payload=json_payload(None)), timeout=RPC_TIMEOUT
    ).run
    live = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="live-task", payload=json_payload(None)), timeout=RPC_TIMEOUT
    ).run
    live_attempt = poll(wstub, "bad-input-worker", "live-task")
    assert live_attempt.run_id == live.id

    before = table_counts(cluster)
    assert before["runs"] == 3

    def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
        details = expect_rpc_error(call, code, *words)
        after = table_counts(cluster)
        assert after == before, f"rows written by a refused request ({details}): {before} -> {after}"
        return details

    t = RPC_TIMEOUT
    unknown_run = str(uuid.uuid4())
    # TriggerRun
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="no-such-task", payload=json_payload({})), timeout=t
        ),
        grpc.StatusCode.NOT_FOUND,
        "no-such-task",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="done-task", payload=cpb.Payload(data=b"{not json", encoding=JSON)),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payload",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="done-task", payload=cpb.Payload(data=b"\xff\xfe", encoding=JSON)),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "payload",
    )
    refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(
                task_id="done-task", payload=cpb.Payload(data=b"<a/>", encoding="xml/tagged")
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "encoding",
        "xml/tagged",
    )
    refused(
        lambda: rstub.TriggerRun(rpb.TriggerRunRequest(task_id="", payload=json_payload({})), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "task_id",
    )
    # GetRun / CancelRun / WaitRun with run ids that are unknown or malformed
    refused(
        lambda: rstub.GetRun(rpb.GetRunRequest(run_id=unknown_run), timeout=t),
        grpc.StatusCode.NOT_FOUND,
        unknown_run,
    )
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=unknown_run), timeout=t),
        grpc.StatusCode.NOT_FOUND,
        unknown_run,
    )
    refused(
        lambda: rstub.GetRun(rpb.GetRunRequest(run_id="not-a-run-id"), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id",
    )
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id="not-a-run-id"), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id",
    )
    refused(lambda: rstub.GetRun(rpb.GetRunRequest(), timeout=t), grpc.StatusCode.INVALID_ARGUMENT, "run_id")
    refused(
        lambda: rstub.WaitRun(rpb.WaitRunRequest(run_id=done.id, timeout=seconds(3600)), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "timeout",
    )
    # CancelRun of a finished run
    refused(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=done.id), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        done.id,
    )
    # Worker writes from an attempt that is not the run's current one (whatever their token)
    step = dict(position=0, name="s1", status=cpb.STEP_STATUS_COMPLETED, output=json_payload(1), tries=1)
    step["attempt_token"] = live_attempt.attempt_token
    refused(
        lambda: wstub.RecordStep(
            wpb.RecordStepRequest(run_id=done.id, attempt=1, **{**step, "attempt_token": a.attempt_token}),
            timeout=t,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        done.id,
    )
    refused(
        lambda: wstub.RecordStep(wpb.RecordStepRequest(run_id=parked.id, attempt=1, **step), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        parked.id,
    )
    refused(
        lambda: wstub.RecordStep(wpb.RecordStepRequest(run_id=live.id, attempt=2, **step), timeout=t),
        grpc.StatusCode.FAILED_PRECONDITION,
        live.id,
    )
    refused(
        lambda: wstub.FinishAttempt(
            wpb.FinishAttemptRequest(
                run_id=live.id,
                attempt=2,
                attempt_token=live_attempt.attempt_token,
                outcome=wpb.ATTEMPT_OUTCOME_COMPLETED,
                output=json_payload(1),
            ),
            timeout=t,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        live.id,
    )
    refused(
        lambda: wstub.RecordStep(
            wpb.RecordStepRequest(
                run_id=live.id,
                attempt=1,
                attempt_token=live_attempt.attempt_token,
                position=0,
                name="s1",
                status=cpb.STEP_STATUS_COMPLETED,
                output=cpb.Payload(data=b"{oops", encoding=JSON),
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "output",
    )
    # RegisterWorker
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(worker_id="w-empty", version="1", slots=1), timeout=t
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tasks",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-factor",
                version="1",
                slots=1,
                tasks=[wpb.TaskDefinition(task_id="bad-retry", retry=cpb.RetryPolicy(factor=0.5))],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "factor",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-timeouts",
                version="1",
                slots=1,
                tasks=[
                    wpb.TaskDefinition(
                        task_id="bad-retry",
                        retry=cpb.RetryPolicy(min_timeout=seconds(10), max_timeout=seconds(1)),
                    )
                ],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_timeout",
    )
    refused(
        lambda: wstub.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id="w-negative",
                version="1",
                slots=1,
                tasks=[wpb.TaskDefinition(task_id="bad-retry", retry=cpb.RetryPolicy(max_attempts=-1))],
            ),
            timeout=t,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_attempts",
    )
    # PollAttempt: the parked run stays queued.
    for bad in (-1, 101):
        refused(
            lambda: wstub.PollAttempt(
                wpb.PollAttemptRequest(
                    worker_id="bad-input-worker", task_ids=["parked-task"], max_attempts=bad, wait=seconds(0)
                ),
                timeout=t,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_attempts",
        )
    # ListRuns
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(page_size=5000), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(page_size=-1), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    for token in ("garbage", "bm90IGEgdG9rZW4=", "!!!"):
        refused(
            lambda: rstub.ListRuns(rpb.ListRunsRequest(page_token=token), timeout=t),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        )
    refused(
        lambda: rstub.ListRuns(rpb.ListRunsRequest(statuses=[99]), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "statuses",
    )

    # The same refusals through the SDK's exceptions.
    with Client(address=cluster.address) as client:
        with pytest.raises(NotFoundError) as nf:
            client.trigger("no-such-task", {"x": 1})
        assert "no-such-task" in str(nf.value)
        assert_clean(str(nf.value))
        with pytest.raises(NotFoundError) as nf:
            client.get(unknown_run)
        assert unknown_run in str(nf.value)
        with pytest.raises(InvalidArgumentError) as ia:
            client.get("not-a-run-id")
        assert "run_id" in str(ia.value)
        assert_clean(str(ia.value))
        with pytest.raises(FailedPreconditionError) as fp:
            client.cancel(done.id)
        assert done.id in str(fp.value)
        assert_clean(str(fp.value))
    assert table_counts(cluster) == before

    # The runs the refusals named are as they were.
    assert rstub.GetRun(rpb.GetRunRequest(run_id=done.id), timeout=t).run.status == cpb.RUN_STATUS_COMPLETED
    assert rstub.GetRun(rpb.GetRunRequest(run_id=parked.id), timeout=t).run.status == cpb.RUN_STATUS_QUEUED
    assert rstub.GetRun(rpb.GetRunRequest(run_id=live.id), timeout=t).run.status == cpb.RUN_STATUS_EXECUTING
