"""Through the frontend (issue 14): a worker id cannot be taken over by another
key (another worker key of the same namespace can neither register it nor poll
as it, and the real worker keeps working), and a task declared differently
under the version that declared it is refused naming the task and the field,
with nothing changed (its schedule in history included); a new version's
declaration is applied."""

from __future__ import annotations

from typing import Any

import grpc
from harness import Cluster, expect_rpc_error, table_counts

from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import schedule_service_pb2_grpc as sgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc

RPC_TIMEOUT = 10.0
NS = "owners"


def worker_key(cluster: Cluster) -> str:
    stub = kgrpc.KeyServiceStub(cluster.channel())
    created = stub.CreateKey(
        kpb.CreateKeyRequest(namespace=NS, role=kpb.KEY_ROLE_WORKER), timeout=RPC_TIMEOUT
    )
    secret: str = created.secret
    return secret


def register(stub: Any, worker_id: str, version: str = "1", **task: Any) -> Any:
    definition = wpb.TaskDefinition(task_id="owned", **task)
    request = wpb.RegisterWorkerRequest(
        namespace=NS, worker_id=worker_id, version=version, tasks=[definition], slots=1
    )
    return stub.RegisterWorker(request, timeout=RPC_TIMEOUT)


def poll(stub: Any, worker_id: str) -> Any:
    request = wpb.PollAttemptRequest(namespace=NS, worker_id=worker_id)
    request.wait.FromMilliseconds(0)
    return stub.PollAttempt(request, timeout=RPC_TIMEOUT)


def test_a_worker_id_is_its_keys_and_a_declaration_changes_only_with_a_version(cluster: Cluster) -> None:
    real = wgrpc.WorkerServiceStub(cluster.channel(key=worker_key(cluster)))
    other = wgrpc.WorkerServiceStub(cluster.channel(key=worker_key(cluster)))
    register(real, "w-real", schedule="0 3 * * *", timezone="UTC")
    assert poll(real, "w-real").assignments == []

    before = table_counts(cluster)
    for call in (lambda: register(other, "w-real"), lambda: poll(other, "w-real")):
        expect_rpc_error(call, grpc.StatusCode.PERMISSION_DENIED, "worker_id 'w-real'", "another API key")
    assert table_counts(cluster) == before
    assert poll(real, "w-real").assignments == [], "the real worker keeps polling"
    register(other, "w-other", schedule="0 3 * * *", timezone="UTC")  # its own id: fine

    # The same version declaring the task differently: refused, nothing changed.
    schedules = sgrpc.ScheduleServiceStub(cluster.channel())

    def declared_schedules() -> list[tuple[str, str]]:
        listed = schedules.ListSchedules(spb.ListSchedulesRequest(namespace=NS), timeout=RPC_TIMEOUT)
        return [(s.cron, s.timezone) for s in listed.schedules]

    assert declared_schedules() == [("0 3 * * *", "UTC")]
    before = table_counts(cluster)
    expect_rpc_error(
        lambda: register(other, "w-other", schedule="* * * * *", timezone="UTC"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "task 'owned'",
        "schedule",
        "declare a new version",
    )
    assert table_counts(cluster) == before
    assert declared_schedules() == [("0 3 * * *", "UTC")]
    # A new version's declaration is applied, with its schedule.
    register(other, "w-other", version="2", schedule="*/5 * * * *", timezone="UTC")
    assert declared_schedules() == [("*/5 * * * *", "UTC")]
    assert cluster.sql_value("SELECT version FROM tasks WHERE namespace = $1", NS) == "2"
