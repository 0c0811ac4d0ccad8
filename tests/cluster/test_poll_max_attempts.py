"""PollAttempt's max_attempts, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): one poll takes up to max_attempts
queued runs, each handed out once and started.
"""

from __future__ import annotations

from api_helpers import RPC_TIMEOUT, register
from harness import Cluster, json_payload, run_stub, seconds, worker_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb


def test_one_poll_takes_up_to_max_attempts_runs_each_started(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    register(wstub, "batch-poller", "batched-task")
    ids = {
        rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id="batched-task", payload=json_payload(i)), timeout=RPC_TIMEOUT
        ).run.id
        for i in range(5)
    }
    first = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=3, wait=seconds(5)
        ),
        timeout=30,
    ).assignments
    assert len(first) == 3, first
    rest = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=10, wait=seconds(5)
        ),
        timeout=30,
    ).assignments
    assert len(rest) == 2, rest
    handed = [a.run_id for a in [*first, *rest]]
    assert sorted(handed) == sorted(ids), "each run handed out exactly once"
    assert all(a.attempt == 1 and a.task_id == "batched-task" for a in [*first, *rest])
    statuses = {rstub.GetRun(rpb.GetRunRequest(run_id=i), timeout=RPC_TIMEOUT).run.status for i in ids}
    assert statuses == {cpb.RUN_STATUS_EXECUTING}
    assert cluster.sql_value("SELECT count(*) FROM queue_entries") == 0
    empty = wstub.PollAttempt(
        wpb.PollAttemptRequest(
            worker_id="batch-poller", task_ids=["batched-task"], max_attempts=10, wait=seconds(0.2)
        ),
        timeout=30,
    )
    assert not empty.assignments
