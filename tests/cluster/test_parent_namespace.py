"""A child's parent is a run of the caller's namespace (issue 14): a trigger in
namespace b naming a run of namespace a as parent_run_id, or an id of no run
at all, is NOT_FOUND naming parent_run_id, with the same answer for both (so it
tells nothing of a), by the one-statement trigger and the general one alike,
alone and in a batch; nothing is written and a's children stay as they were.
A parent of the caller's own namespace still works on both paths."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf.duration_pb2 import Duration
from harness import Cluster, expect_rpc_error, json_payload, run_stub, table_counts, worker_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

RPC_TIMEOUT = 15.0
TASK = "parent-check"
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_a_parent_of_another_namespace_or_none_is_refused_and_nothing_written(cluster: Cluster) -> None:
    runs, workers = run_stub(cluster), worker_stub(cluster)
    for ns in ("a", "b"):  # registered, never polled: every run stays queued
        workers.RegisterWorker(
            wpb.RegisterWorkerRequest(
                namespace=ns,
                worker_id=f"w-{ns}",
                version="1",
                slots=1,
                tasks=[wpb.TaskDefinition(task_id=TASK)],
            ),
            timeout=RPC_TIMEOUT,
        )

    def trigger(ns: str, parent: str, general: bool = False) -> rpb.TriggerRunResponse:
        # A ttl takes the general path (a transaction), none the one statement.
        options = cpb.TriggerOptions(ttl=Duration(seconds=3600)) if general else None
        request = rpb.TriggerRunRequest(
            namespace=ns,
            task_id=TASK,
            payload=json_payload({"ns": ns}),
            parent_run_id=parent,
            options=options,
        )
        response: rpb.TriggerRunResponse = runs.TriggerRun(request, timeout=RPC_TIMEOUT)
        return response

    def children(ns: str, parent: str) -> list[str]:
        listed = runs.ListRuns(rpb.ListRunsRequest(namespace=ns, parent_run_id=parent), timeout=RPC_TIMEOUT)
        return sorted(r.id for r in listed.runs)

    parent = trigger("a", "").run.id
    # Children of a run of the same namespace, on both paths.
    own = [trigger("a", parent).run.id, trigger("a", parent, general=True).run.id]
    assert children("a", parent) == sorted(own)
    b_parent = trigger("b", "").run.id
    assert trigger("b", b_parent).run.parent_run_id == b_parent

    before = table_counts(cluster)
    unknown = str(uuid.uuid4())
    messages = {}
    for name, foreign in (("a's run", parent), ("an unknown id", unknown)):
        for general in (False, True):
            details = expect_rpc_error(
                lambda foreign=foreign, general=general: trigger("b", foreign, general),
                NOT_FOUND,
                "parent_run_id",
                foreign,
                "namespace 'b'",
            )
            messages[(name, general)] = details.replace(foreign, "<id>")
        batch = rpb.BatchTriggerRunsRequest(
            namespace="b",
            runs=[
                rpb.TriggerRunRequest(task_id=TASK, payload=json_payload(1)),
                rpb.TriggerRunRequest(task_id=TASK, payload=json_payload(2), parent_run_id=foreign),
            ],
        )
        expect_rpc_error(
            lambda batch=batch: runs.BatchTriggerRuns(batch, timeout=RPC_TIMEOUT),
            NOT_FOUND,
            "runs[1].parent_run_id",
            foreign,
        )
    # One answer for a foreign run and for no run: nothing of a shows in b.
    assert len(set(messages.values())) == 1, messages
    assert table_counts(cluster) == before, "a refused trigger wrote rows"
    assert children("a", parent) == sorted(own), "b's triggers changed a's children"
    assert children("b", parent) == []
