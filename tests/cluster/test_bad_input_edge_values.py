"""Edge values that once answered INTERNAL or UNKNOWN (issue 14's probe), each
now a clear INVALID_ARGUMENT naming the field, with nothing written: Durations
too long for a timedelta, a Struct holding NaN or a NUL character, a queue's
rate period with a limit of 0, a Struct nested past protobuf's depth limit, and
an echo of the input bounded in the message (a 20 KB id)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
from api_helpers import RPC_TIMEOUT, register
from fuzz_strategies import varint
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from harness import Cluster, expect_rpc_error, json_payload, run_stub, table_counts, worker_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc, wait_service_pb2_grpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb

HUGE = Duration(seconds=86_400_000_000_000)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def struct(**values: Any) -> Struct:
    s = Struct()
    s.update(values)
    return s


def deep_struct_bytes(depth: int) -> bytes:
    """A TriggerRunRequest whose options.metadata Struct nests `depth` levels,
    serialized by hand (the Python runtime refuses to build it)."""
    inner = Struct()
    inner.update({"leaf": 1})
    data = inner.SerializeToString()
    for _ in range(depth):
        # Struct{fields{key:"k", value: Value{struct_value: <data>}}}
        value = b"\x2a" + varint(len(data)) + data  # Value.struct_value = 5
        entry = b"\x0a\x01k" + b"\x12" + varint(len(value)) + value  # map entry: key 1, value 2
        data = b"\x0a" + varint(len(entry)) + entry  # Struct.fields = 1
    options = b"\x2a" + varint(len(data)) + data  # TriggerOptions.metadata = 5
    return b"\x12\x04echo" + b"\x2a" + varint(len(options)) + options  # task_id 2, options 5


def test_edge_values_are_refused_naming_the_field_and_write_nothing(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    register(wstub, "edge-worker", "echo")
    channel = cluster.channel()
    qstub = queue_service_pb2_grpc.QueueServiceStub(channel)
    tstub = wait_service_pb2_grpc.WaitServiceStub(channel)
    before = table_counts(cluster)

    def refused(call: Callable[[], Any], *words: str) -> str:
        details = expect_rpc_error(call, INVALID, *words)
        assert table_counts(cluster) == before, f"rows written by a refused request ({details})"
        return details

    def trigger(**options: Any) -> Callable[[], Any]:
        request = rpb.TriggerRunRequest(
            task_id="echo", payload=json_payload(1), options=cpb.TriggerOptions(**options)
        )
        return lambda: rstub.TriggerRun(request, timeout=RPC_TIMEOUT)

    run_id = "00000000-0000-0000-0000-000000000001"
    refused(trigger(delay=HUGE), "options.delay")
    refused(trigger(ttl=HUGE), "options.ttl")
    refused(
        lambda: rstub.WaitRun(rpb.WaitRunRequest(run_id=run_id, timeout=HUGE), timeout=RPC_TIMEOUT), "timeout"
    )
    poll = wpb.PollAttemptRequest(worker_id="edge-worker", task_ids=["echo"], wait=HUGE)
    refused(lambda: wstub.PollAttempt(poll, timeout=RPC_TIMEOUT), "wait")
    token = wspb.CreateWaitTokenRequest(timeout=HUGE)
    refused(lambda: tstub.CreateWaitToken(token, timeout=RPC_TIMEOUT), "timeout")
    for limit in (0, 5):
        rate = qpb.RateLimit(limit=limit, period=Duration(seconds=2_147_484))
        update = qpb.UpdateQueueRequest(name="echo", rate_limit=rate)
        refused(lambda update=update: qstub.UpdateQueue(update, timeout=RPC_TIMEOUT), "rate_limit.period")
    refused(trigger(metadata=struct(x=math.nan)), "options.metadata", "NaN")
    refused(trigger(metadata=struct(x="a\x00b")), "options.metadata", "NUL")
    refused(trigger(metadata=struct(**{"a\x00b": 1})), "options.metadata", "NUL")
    raw = channel.unary_unary(
        "/cairn.v1.RunService/TriggerRun",
        request_serializer=lambda b: b,
        response_deserializer=rpb.TriggerRunResponse.FromString,
    )
    details = refused(lambda: raw(deep_struct_bytes(120), timeout=RPC_TIMEOUT), "request")
    assert "Decode" not in details and "MaxDepth" not in details
    long_id = "x" * 20_000
    details = refused(
        lambda: rstub.TriggerRun(
            rpb.TriggerRunRequest(task_id=long_id, payload=json_payload(1)), timeout=RPC_TIMEOUT
        ),
        "task_id",
    )
    assert len(details) < 1000, f"the message echoes the input whole ({len(details)} characters)"
