"""History and matching are no side door (issue 14): they take calls only with
the cluster's internal credential, which the frontend and matching send; a call
without it or with a wrong one is UNAUTHENTICATED and writes nothing, the
health service still answers, and a service with no credential refuses to
start unless told --insecure-no-auth."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from api_helpers import start_basic_worker
from harness import (
    PYTHON,
    REPO_ROOT,
    Cluster,
    expect_rpc_error,
    health_check,
    json_payload,
    table_counts,
    wait_for,
)

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.embedded import free_port
from services.common import internal_auth
from worker_sdk import Client

RPC_TIMEOUT = 10.0
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def stubs(channel: grpc.Channel) -> tuple[Any, Any]:
    return hgrpc.HistoryServiceStub(channel), mgrpc.MatchingServiceStub(channel)  # type: ignore[no-untyped-call]


def test_history_and_matching_refuse_calls_without_the_credential(cluster: Cluster) -> None:
    wrong = "w" * 43
    assert wrong != cluster.internal_credential
    callers = {
        "no credential": (
            cluster.channel("history", credential=False),
            cluster.channel("matching", credential=False),
        ),
        "a wrong credential": tuple(
            internal_auth.credentialed(cluster.channel(name, credential=False), wrong)  # type: ignore[arg-type]
            for name in ("history", "matching")
        ),
    }
    before = table_counts(cluster)
    for how, (history_channel, matching_channel) in callers.items():
        history = hgrpc.HistoryServiceStub(history_channel)  # type: ignore[no-untyped-call]
        matching = mgrpc.MatchingServiceStub(matching_channel)  # type: ignore[no-untyped-call]
        calls: dict[str, Callable[[], Any]] = {
            "history TriggerRuns": lambda: history.TriggerRuns(
                rpb.BatchTriggerRunsRequest(
                    namespace="default",
                    runs=[
                        rpb.TriggerRunRequest(namespace="default", task_id="echo", payload=json_payload(1))
                    ],
                ),
                timeout=RPC_TIMEOUT,
            ),
            "history GetRun": lambda: history.GetRun(
                rpb.GetRunRequest(namespace="default", run_id="00000000-0000-0000-0000-000000000000"),
                timeout=RPC_TIMEOUT,
            ),
            "matching UpdateQueue": lambda: matching.UpdateQueue(
                qpb.UpdateQueueRequest(namespace="default", name="q", concurrency_limit=-5),
                timeout=RPC_TIMEOUT,
            ),
            "matching RegisterWorker": lambda: matching.RegisterWorker(
                wpb.RegisterWorkerRequest(
                    namespace="default",
                    worker_id="intruder",
                    version="1",
                    tasks=[wpb.TaskDefinition(task_id="x")],
                ),
                timeout=RPC_TIMEOUT,
            ),
        }
        for name, call in calls.items():
            details = expect_rpc_error(call, UNAUTHENTICATED, "credential", "cairn-internal")
            assert cluster.internal_credential not in details and wrong not in details, (how, name, details)
            expected = "no internal credential" if how == "no credential" else "wrong internal credential"
            assert expected in details, (how, name, details)
    assert table_counts(cluster) == before, "a refused internal call wrote rows"

    # Health answers without the credential, for probes and load balancers.
    for name in (
        "history",
        "matching",
        "frontend",
    ):  # the frontend's follows its backends', checked each second
        wait_for(
            lambda name=name: health_check(cluster.services[name].address, timeout=5)[0],
            10,
            message=f"{name} does not answer SERVING without the credential",
        )

    # With the credential, the same services answer (what frontend and matching send).
    history, matching = stubs(cluster.channel("history")), stubs(cluster.channel("matching"))[1]
    assert history[0].ListRuns(rpb.ListRunsRequest(namespace="default"), timeout=RPC_TIMEOUT).runs == []
    matching.UpdateQueue(
        qpb.UpdateQueueRequest(namespace="default", name="q", concurrency_limit=2), timeout=RPC_TIMEOUT
    )
    assert cluster.sql_value("SELECT concurrency_limit FROM queues WHERE name = 'q'") == 2

    # Through the frontend everything works: a worker registers and polls (via
    # matching, which claims from history), a client triggers and waits.
    start_basic_worker(cluster)
    with Client(address=cluster.address) as client:
        run = client.trigger("echo", {"hello": 1})
        assert client.wait(run.id, timeout=20).status == "completed"


def _start_alone(service: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`cairn <service>` with `env` (no CAIRN_* of the developer's shell), expected
    to exit at once."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    return subprocess.run(
        [PYTHON, "-m", "cairn_cli", service, "--listen", f"127.0.0.1:{free_port()}", *args],
        env={**clean, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["history", "matching", "frontend"])
def test_a_service_without_a_credential_refuses_to_start(service: str) -> None:
    done = _start_alone(service, {})
    assert done.returncode != 0, done
    assert f"cairn {service}: no internal credential" in done.stderr, done.stderr
    assert "CAIRN_INTERNAL_CREDENTIAL" in done.stderr and "--insecure-no-auth" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr

    short = _start_alone(service, {"CAIRN_INTERNAL_CREDENTIAL": "short"})
    assert short.returncode != 0, short
    assert "at least 16 characters" in short.stderr, short.stderr


def test_insecure_no_auth_runs_without_a_credential(cluster_factory: Any) -> None:
    # --insecure-no-auth (here CAIRN_INSECURE_NO_AUTH=1): every service starts
    # without a credential, and history and matching take calls without one.
    cluster = cluster_factory(env={"CAIRN_INTERNAL_CREDENTIAL": "", "CAIRN_INSECURE_NO_AUTH": "1"})
    history, matching = stubs(cluster.channel("history"))[0], stubs(cluster.channel("matching"))[1]
    assert history.ListRuns(rpb.ListRunsRequest(namespace="default"), timeout=RPC_TIMEOUT).runs == []
    matching.UpdateQueue(
        qpb.UpdateQueueRequest(namespace="default", name="q", concurrency_limit=3), timeout=RPC_TIMEOUT
    )
    start_basic_worker(cluster)
    with Client(address=cluster.address) as client:
        run = client.trigger("echo", {"hello": 2})
        assert client.wait(run.id, timeout=20).status == "completed"
