"""Graceful shutdown of the services (grpc_server.serve): on SIGTERM a service
says NOT_SERVING, takes no new call, and ends its long polls and streams at
once with an answer the client handles (an empty PollAttempt, a WaitRun not
done, WatchRun/WatchRuns ended UNAVAILABLE, which the SDK reconnects; an HTTP
event stream ends with `event: error` UNAVAILABLE, which the dashboard
reconnects), so it exits in a moment, not after the polls' 50 s, with code 0
and nothing in its log but its own lines."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from api_helpers import RPC_TIMEOUT, register
from harness import Cluster, json_payload, run_stub, seconds, wait_for, worker_stub
from test_http_watch import EventStream

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.embedded import free_port
from worker_sdk import Client

LONG = 50.0  # the polls' and waits' own wait: a shutdown must not wait for it
PROMPT = 5.0  # what a stop may take here (the grace is 10 s)


def _clean_stop(cluster: Cluster, name: str) -> float:
    """SIGTERM to `name`: exits 0, quickly; its log says it drained and holds
    no error. Returns how long it took."""
    before = len(cluster.services[name].log_text())
    t0 = time.monotonic()
    code = cluster.stop(name)
    took = time.monotonic() - t0
    log = cluster.services[name].log_text()[before:]
    assert code == 0, f"{name} exited {code}:\n{log}"
    assert took < PROMPT, f"{name} took {took:.1f}s to stop:\n{log}"
    assert "stopping: NOT_SERVING" in log and "stopped in" in log, log
    for bad in ("Traceback", " ERROR ", "CRITICAL"):
        assert bad not in log, f"{name}'s log has {bad!r}:\n{log}"
    return took


def _open_calls(cluster: Cluster) -> tuple[Any, Any, str]:
    """A PollAttempt of a registered worker with no work for it, and a WaitRun
    of a run that stays queued, both waiting LONG seconds; and the run's id."""
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    register(wstub, "drain-poller", "idle-task", "queued-task")
    run_id = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="queued-task", payload=json_payload(1)), timeout=RPC_TIMEOUT
    ).run.id
    seen = "SELECT last_seen_at FROM workers WHERE worker_id = 'drain-poller'"
    registered = cluster.sql_value(seen)
    poll = wstub.PollAttempt.future(
        wpb.PollAttemptRequest(worker_id="drain-poller", task_ids=["idle-task"], wait=seconds(LONG)),
        timeout=LONG + 20,
    )
    # matching marks the worker seen when the poll reaches it
    wait_for(lambda: cluster.sql_value(seen) > registered, 10, message="the poll never reached matching")
    wait = rstub.WaitRun.future(rpb.WaitRunRequest(run_id=run_id, timeout=seconds(LONG)), timeout=LONG + 20)
    return poll, wait, run_id


def test_a_stopping_frontend_ends_its_polls_and_streams_at_once(cluster_factory: Any) -> None:
    http = f"127.0.0.1:{free_port()}"
    cluster: Cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": http})
    rstub = run_stub(cluster)
    poll, wait, run_id = _open_calls(cluster)
    watch = rstub.WatchRun(rpb.WatchRunRequest(run_id=run_id), timeout=LONG + 20)
    watch_all = rstub.WatchRuns(rpb.WatchRunsRequest(task_id="queued-task"), timeout=LONG + 20)
    first = next(watch)  # the streams are being served (and the poll and wait, sent before them)
    assert first.updates[0].run.id == run_id
    watch_all.initial_metadata()  # sent once its starting point is read: it is being served
    sse = EventStream(f"http://{http}", f"/v1/runs/{run_id}/watch")
    assert sse.response.status_code == 200
    assert sse.next()["data"]["run"]["id"] == run_id

    _clean_stop(cluster, "frontend")

    assert not poll.result(timeout=1).assignments  # answered empty: the worker polls again
    waited = wait.result(timeout=1)
    assert not waited.done and waited.run.status == cpb.RUN_STATUS_QUEUED
    for stream in (watch, watch_all):
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
        assert "shutting down" in (ended.value.details() or "")
    error = sse.next()
    assert error["event"] == "error" and error["data"]["code"] == "UNAVAILABLE", error

    # Started again, it serves the same run; the SDK's watch goes on from where it was.
    cluster.start("frontend")
    with Client(cluster.address) as client:
        assert client.get(run_id).status == "queued"


def test_a_stopping_matching_answers_its_polls_at_once(cluster: Cluster) -> None:
    poll, wait, run_id = _open_calls(cluster)
    _clean_stop(cluster, "matching")
    assert not poll.result(timeout=1).assignments  # through the frontend, answered empty
    cluster.start("matching")
    assert not wait.done()  # the WaitRun is the frontend's, not matching's to end
    wait.cancel()
    with Client(cluster.address) as client:
        assert client.get(run_id).status == "queued"


def test_a_stopping_history_exits_at_once_and_comes_back(cluster: Cluster) -> None:
    poll, wait, run_id = _open_calls(cluster)
    _clean_stop(cluster, "history")
    cluster.start("history")
    # The frontend's WaitRun re-read the run across the restart (its calls to
    # history wait for it to be back): still waiting, not failed.
    assert not wait.done()
    with Client(cluster.address) as client:
        assert client.get(run_id).status == "queued"
    poll.cancel()
    wait.cancel()
