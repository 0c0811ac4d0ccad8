"""Cancelling runs, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): a queued run is canceled at once; an executing
run is canceled between its steps, and its worker's later writes are refused;
cancelling a finished run fails with FAILED_PRECONDITION.

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks` (api_helpers.py starts them).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from api_helpers import RPC_TIMEOUT, read_lines, register, start_basic_worker
from harness import Cluster, expect_rpc_error, run_stub, wait_for, worker_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import Client, FailedPreconditionError

# ---- cancel -----------------------------------------------------------------------------


@pytest.mark.cluster_options(lease_seconds=10)
def test_cancel_a_queued_and_an_executing_run(cluster: Cluster, tmp_path: Path) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    # A queued run: its task is registered, but nobody polls for it.
    register(wstub, "idle-worker", "parked")
    with Client(address=cluster.address) as client:
        parked = client.trigger("parked", {"n": 1})
        assert parked.status == "queued"
        rid = uuid.UUID(parked.id)
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", rid) == 1
        canceled = client.cancel(parked.id, reason="no longer needed")
        assert canceled.status == "canceled"
        assert canceled.error is not None and "no longer needed" in canceled.error.message
        # At once: no waiting for a worker or a sweep.
        assert cluster.sql_value("SELECT status FROM runs WHERE id = $1", rid) == "canceled"
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", rid) == 0
        assert client.get(parked.id).status == "canceled"
        assert client.get(parked.id).attempts == []
        with pytest.raises(FailedPreconditionError):
            client.cancel(parked.id)

        # An executing run, waiting at its second step.
        start_basic_worker(cluster, slots=1)
        counter, release = tmp_path / "gated.txt", tmp_path / "release"
        run = client.trigger("gated", {"counter": str(counter), "release": str(release)})
        run_uuid = uuid.UUID(run.id)
        wait_for(
            lambda: cluster.sql_value("SELECT count(*) FROM steps WHERE run_id = $1", run_uuid) == 1,
            20,
            message="step 'first' never recorded",
        )
        assert read_lines(counter) == [f"first {run.id}"]
        assert client.get(run.id).status == "executing"

        canceled = client.cancel(run.id)
        assert canceled.status == "canceled"
        assert [a.status for a in canceled.attempts] == ["canceled"]
        release.touch()  # the gate opens: the worker records "gate", which is refused

        # The worker has a single slot: once it ran another run, it is done with
        # the canceled attempt.
        echo = client.trigger("echo", {"after": "cancel"})
        assert client.wait(echo.id, timeout=20).status == "completed"

        final = client.get(run.id)
        assert final.status == "canceled"
        assert [s.name for s in final.steps] == ["first"]
        assert [a.status for a in final.attempts] == ["canceled"]
        assert read_lines(counter) == [f"first {run.id}"], "step 'after' ran after the cancel"
        assert cluster.sql_value("SELECT count(*) FROM steps WHERE run_id = $1", run_uuid) == 1
        assert cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", run_uuid) == 0
        assert cluster.sql_value("SELECT count(*) FROM timers WHERE run_id = $1", run_uuid) == 0

        with pytest.raises(FailedPreconditionError) as fp:
            client.cancel(run.id)
        assert run.id in str(fp.value)
    expect_rpc_error(
        lambda: rstub.CancelRun(rpb.CancelRunRequest(run_id=run.id), timeout=RPC_TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
        "canceled",
    )
    assert (
        run_stub(cluster).GetRun(rpb.GetRunRequest(run_id=run.id), timeout=RPC_TIMEOUT).run.status
        == cpb.RUN_STATUS_CANCELED
    )
