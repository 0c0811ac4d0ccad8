"""API keys against a real cluster: a call without a key, with a bad, revoked
or expired one is UNAUTHENTICATED (HTTP 401); a key used outside its namespace
or role is PERMISSION_DENIED (403); streams are checked before their first
message; nothing is written by a refused call. The session's admin key (a key
for every namespace, harness/auth.py) creates the keys."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from harness import Cluster, auth, cairn_cli, expect_rpc_error, json_payload
from harness.database import table_counts
from harness.waiting import wait_for

from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from cairn_cli.embedded import free_port

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
def keyed(cluster_factory: Any) -> tuple[Cluster, str]:
    """A cluster with task "t" registered in namespace "a", and its HTTP API's URL."""
    http = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": http})
    register = wpb.RegisterWorkerRequest(
        namespace="a", worker_id="w-a", version="1", tasks=[wpb.TaskDefinition(task_id="t")], slots=1
    )
    wgrpc.WorkerServiceStub(cluster.channel()).RegisterWorker(register, timeout=10)
    return cluster, f"http://{http}"


def create_key(cluster: Cluster, namespace: str, role: int, **fields: Any) -> str:
    stub = kgrpc.KeyServiceStub(cluster.channel())
    response = stub.CreateKey(kpb.CreateKeyRequest(namespace=namespace, role=role, **fields), timeout=10)
    assert response.key.namespace == namespace and response.secret.startswith("cairn_")
    return response.secret


def trigger(namespace: str = "a", **fields: Any) -> rpb.TriggerRunRequest:
    return rpb.TriggerRunRequest(namespace=namespace, task_id="t", payload=json_payload(1), **fields)


def test_no_key_a_bad_key_and_a_malformed_header_are_unauthenticated_and_write_nothing(
    keyed: tuple[Cluster, str],
) -> None:
    cluster, base = keyed
    before = table_counts(cluster)
    for key in (None, "cairn_0123456789abcdef_" + "A" * 43, "not-a-key"):
        runs = rgrpc.RunServiceStub(cluster.channel(key=key))
        expect_rpc_error(lambda runs=runs: runs.TriggerRun(trigger(), timeout=10), UNAUTHENTICATED)
        stream = runs.WatchRuns(rpb.WatchRunsRequest(namespace="a"), timeout=10)
        expect_rpc_error(lambda stream=stream: next(iter(stream)), UNAUTHENTICATED)
        with httpx.Client(base_url=base, headers=auth.headers(key), timeout=10) as http:
            answer = http.post("/v1/runs", json={"namespace": "a", "task_id": "t", "payload": 1})
            assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED", answer.text
            watch = http.get("/v1/runs/watch", params={"namespace": "a"})
            assert watch.status_code == 401, watch.text
    message = expect_rpc_error(
        lambda: rgrpc.RunServiceStub(cluster.channel(key=None)).GetRun(rpb.GetRunRequest(), timeout=10),
        UNAUTHENTICATED,
        "authorization",
    )
    assert "Traceback" not in message
    assert table_counts(cluster) == before


def test_a_key_works_only_in_its_namespace_and_for_its_role(keyed: tuple[Cluster, str]) -> None:
    cluster, base = keyed
    client_a = create_key(cluster, "a", kpb.KEY_ROLE_CLIENT, name="app of a")
    worker_a = create_key(cluster, "a", kpb.KEY_ROLE_WORKER)
    runs = rgrpc.RunServiceStub(cluster.channel(key=client_a))
    run = runs.TriggerRun(trigger("a"), timeout=10).run
    assert run.namespace == "a"
    implicit = runs.TriggerRun(rpb.TriggerRunRequest(task_id="t"), timeout=10).run
    assert implicit.namespace == "a"  # an empty namespace is the key's
    before = table_counts(cluster)
    expect_rpc_error(lambda: runs.TriggerRun(trigger("b"), timeout=10), DENIED, "namespace 'a'", "'b'")
    expect_rpc_error(lambda: runs.GetRun(rpb.GetRunRequest(namespace="b", run_id=run.id), timeout=10), DENIED)
    batch = rpb.BatchTriggerRunsRequest(namespace="a", runs=[trigger("a"), trigger("b")])
    expect_rpc_error(lambda: runs.BatchTriggerRuns(batch, timeout=10), DENIED, "'b'")
    workers = wgrpc.WorkerServiceStub(cluster.channel(key=client_a))
    poll = wpb.PollAttemptRequest(namespace="a", worker_id="w")
    expect_rpc_error(lambda: workers.PollAttempt(poll, timeout=10), DENIED, "client key", "PollAttempt")
    as_worker = rgrpc.RunServiceStub(cluster.channel(key=worker_a))
    expect_rpc_error(lambda: as_worker.TriggerRun(trigger("a"), timeout=10), DENIED, "child runs")
    expect_rpc_error(
        lambda: as_worker.GetRun(rpb.GetRunRequest(namespace="a", run_id=run.id), timeout=10),
        DENIED,
        "worker key",
    )
    keys_of_client = kgrpc.KeyServiceStub(cluster.channel(key=client_a))
    expect_rpc_error(lambda: keys_of_client.ListKeys(kpb.ListKeysRequest(namespace="a"), timeout=10), DENIED)
    with httpx.Client(base_url=base, headers=auth.headers(client_a), timeout=10) as http:
        answer = http.get(f"/v1/runs/{run.id}", params={"namespace": "b"})
        assert answer.status_code == 403 and answer.json()["code"] == "PERMISSION_DENIED", answer.text
        assert http.get(f"/v1/runs/{run.id}", params={"namespace": "a"}).status_code == 200
        watch = http.get("/v1/runs/watch", params={"namespace": "b"})
        assert watch.status_code == 403, watch.text
    assert table_counts(cluster) == before


def test_a_revoked_key_stops_working_at_once_and_an_expired_one_when_it_expires(
    keyed: tuple[Cluster, str],
) -> None:
    cluster, _ = keyed
    admin = kgrpc.KeyServiceStub(cluster.channel())
    made = admin.CreateKey(kpb.CreateKeyRequest(namespace="a", role=kpb.KEY_ROLE_CLIENT), timeout=10)
    runs = rgrpc.RunServiceStub(cluster.channel(key=made.secret))
    runs.TriggerRun(trigger("a"), timeout=10)
    listed = admin.ListKeys(kpb.ListKeysRequest(namespace="a"), timeout=10).keys
    assert [(k.id, k.namespace) for k in listed][0] == (made.key.id, "a")  # newest first
    assert {k.namespace for k in listed} == {"a", "*"}  # the keys for every namespace too, to this admin
    assert not listed[0].HasField("revoked_at")
    admin.RevokeKey(kpb.RevokeKeyRequest(namespace="a", id=made.key.id), timeout=10)

    def refused() -> bool:
        try:
            runs.TriggerRun(trigger("a"), timeout=10)
        except grpc.RpcError as exc:
            return exc.code() == UNAUTHENTICATED
        return False

    wait_for(refused, timeout=5, message="the revoked key still works")
    expires = Timestamp(seconds=int(time.time()) + 2)
    short = admin.CreateKey(
        kpb.CreateKeyRequest(namespace="a", role=kpb.KEY_ROLE_CLIENT, expires_at=expires), timeout=10
    )
    runs = rgrpc.RunServiceStub(cluster.channel(key=short.secret))
    runs.TriggerRun(trigger("a"), timeout=10)
    wait_for(refused, timeout=10, message="the expired key still works")


def test_only_an_admin_manages_keys_and_only_a_key_for_every_namespace_makes_one(cluster: Cluster) -> None:
    admin_a = create_key(cluster, "a", kpb.KEY_ROLE_ADMIN)
    keys_a = kgrpc.KeyServiceStub(cluster.channel(key=admin_a))
    made = keys_a.CreateKey(kpb.CreateKeyRequest(namespace="a", role=kpb.KEY_ROLE_WORKER), timeout=10)
    assert made.key.namespace == "a"
    for request in (
        kpb.CreateKeyRequest(namespace="b", role=kpb.KEY_ROLE_CLIENT),
        kpb.CreateKeyRequest(role=kpb.KEY_ROLE_ADMIN, all_namespaces=True),
    ):
        expect_rpc_error(lambda request=request: keys_a.CreateKey(request, timeout=10), DENIED)
    expect_rpc_error(
        lambda: keys_a.RevokeKey(kpb.RevokeKeyRequest(namespace="b", id=made.key.id), timeout=10), DENIED
    )
    expect_rpc_error(
        lambda: keys_a.CreateKey(kpb.CreateKeyRequest(namespace="a"), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "role",
    )


def test_the_cli_creates_lists_and_revokes_keys_and_says_when_a_key_is_refused(cluster: Cluster) -> None:
    made = cairn_cli(cluster, "keys", "create", "--namespace", "a", "--role", "worker", "--name", "billing")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("cairn_") and "only time" in made.stderr
    key_id = secret.split("_")[1]
    listed = cairn_cli(cluster, "keys", "list", "--namespace", "a", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = [r for r in rows if r["id"] == key_id]
    assert mine and mine[0]["role"] == "worker" and mine[0]["name"] == "billing", listed.stdout
    assert all("secret" not in r for r in rows)
    table = cairn_cli(cluster, "keys", "list", "--namespace", "a")
    assert key_id in table.stdout and "active" in table.stdout, table.stdout
    revoked = cairn_cli(cluster, "keys", "revoke", key_id, "--namespace", "a")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    as_worker = cairn_cli(cluster, "runs", "list", "--namespace", "a", "--api-key", secret)
    assert as_worker.returncode != 0
    assert "UNAUTHENTICATED" in as_worker.stderr or "refused" in as_worker.stderr, as_worker.stderr
    assert "Traceback" not in as_worker.stderr and secret not in as_worker.stderr
    bad = cairn_cli(cluster, "keys", "create", "--namespace", "a", "--role", "owner")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    past = cairn_cli(
        cluster, "keys", "create", "--namespace", "a", "--role", "client", "--expires", "2001-01-01T00:00:00Z"
    )
    assert past.returncode != 0 and "expires_at" in past.stderr and "future" in past.stderr, past.stderr
