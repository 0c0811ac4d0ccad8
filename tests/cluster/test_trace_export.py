"""Trace export over OTLP (issue 12 traces), with real processes: a tiny OTLP
receiver in this process (opentelemetry-proto's TraceService on a free port)
gets the spans of a frontend and a `cairn worker` started with
OTEL_EXPORTER_OTLP_ENDPOINT. A run triggered with a client's traceparent forms
one trace: client -> "cairn.frontend.trigger" (SERVER, service.name
cairn-frontend) -> "cairn.attempt" (cairn-worker) -> one "cairn.step" per step.
The worker exports only at its shutdown here (a batch delay longer than the
test), so its spans arriving shows the flush. An HTTP trigger's `traceparent`
header joins its trace the same way, and without export the header is what
the run stores."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import pytest
from api_helpers import APPS_DIR, JSON, TASKS_MODULE, register
from google.protobuf.duration_pb2 import Duration
from harness import Cluster, auth, wait_registered
from harness.waiting import wait_for
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tspb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsgrpc
from opentelemetry.proto.trace.v1 import trace_pb2

from cairn import tracing
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1.worker_service_pb2_grpc import WorkerServiceStub
from cairn_cli.embedded import free_port

WAIT = 30.0
CLIENT = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01"
HTTP_CLIENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Receiver(tsgrpc.TraceServiceServicer):
    """An OTLP trace collector that keeps every span it is sent, with its
    resource's service.name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, trace_pb2.Span]] = []

    def Export(
        self, request: tspb.ExportTraceServiceRequest, context: Any
    ) -> tspb.ExportTraceServiceResponse:
        with self.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.spans += [(attributes.get("service.name", ""), s) for s in scope.spans]
        return tspb.ExportTraceServiceResponse()

    def in_trace(self, trace_id: str) -> list[tuple[str, trace_pb2.Span]]:
        with self.lock:
            return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_id]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collector = Receiver()
    tsgrpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield collector, port
    server.stop(grace=None)


def named(spans: list[tuple[str, trace_pb2.Span]], prefix: str) -> list[tuple[str, trace_pb2.Span]]:
    return [(svc, s) for svc, s in spans if s.name.startswith(prefix)]


def span_id_of(traceparent: str) -> bytes:
    return bytes.fromhex(traceparent.split("-")[2])


def test_one_trace_from_the_client_through_the_frontend_to_the_worker(
    cluster_factory: Any, receiver: tuple[Receiver, int]
) -> None:
    collector, port = receiver
    http_address = f"127.0.0.1:{free_port()}"
    cluster: Cluster = cluster_factory(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between the frontend's batches
            "CAIRN_HTTP_ADDRESS": http_address,
        }
    )
    for service in ("frontend", "history", "matching"):
        assert f"as service.name cairn-{service}" in cluster.logs(), service
    # The worker exports nothing until its shutdown: only the flush sends its spans.
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, env={"OTEL_BSP_SCHEDULE_DELAY": str(3_600_000)})
    wait_registered(cluster, "three-steps", "echo", worker=worker)
    runs = rgrpc.RunServiceStub(cluster.channel())

    request = rpb.TriggerRunRequest(
        task_id="three-steps",
        payload=cpb.Payload(data=b'{"x": 2}', encoding=JSON),
        options=cpb.TriggerOptions(traceparent=CLIENT),
    )
    run = runs.TriggerRun(request, timeout=WAIT).run
    trace_id = tracing.trace_id_of(CLIENT)
    assert run.trace_id == trace_id
    done = runs.WaitRun(rpb.WaitRunRequest(run_id=run.id, timeout=Duration(seconds=20)), timeout=WAIT)
    assert done.run.status == cpb.RUN_STATUS_COMPLETED, done

    # The frontend's span: a SERVER child of the client's, its context the run's.
    def frontend_span() -> list[tuple[str, trace_pb2.Span]]:
        return named(collector.in_trace(trace_id), "cairn.frontend.trigger")

    ((service, trigger),) = wait_for(frontend_span, WAIT, message="the frontend's span never came")
    assert service == "cairn-frontend"
    assert trigger.name == "cairn.frontend.trigger three-steps"
    assert trigger.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert trigger.parent_span_id == span_id_of(CLIENT)
    attributes = {a.key: a.value for a in trigger.attributes}
    assert attributes["cairn.run_id"].string_value == run.id
    assert attributes["cairn.task_id"].string_value == "three-steps"
    stored = cluster.sql_value("SELECT traceparent FROM runs WHERE id = $1::uuid", run.id)
    assert span_id_of(stored) == trigger.span_id
    assert not named(collector.in_trace(trace_id), "cairn.attempt"), "the worker exported before its shutdown"

    # The worker's spans come with its shutdown: the attempt under the frontend's span, the steps under it.
    assert worker.stop() == 0

    def worker_spans() -> list[tuple[str, trace_pb2.Span]] | None:
        spans = named(collector.in_trace(trace_id), "cairn.")
        return spans if len(named(spans, "cairn.step")) == 3 else None

    spans = wait_for(worker_spans, WAIT, message="the worker's spans never came")
    ((service, attempt),) = named(spans, "cairn.attempt")
    assert service == "cairn-worker" and attempt.name == "cairn.attempt three-steps"
    assert attempt.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
    assert attempt.parent_span_id == trigger.span_id
    steps = named(spans, "cairn.step")
    assert sorted(s.name for _, s in steps) == [
        "cairn.step add",
        "cairn.step describe",
        "cairn.step multiply",
    ]
    assert {svc for svc, _ in steps} == {"cairn-worker"}
    assert all(s.parent_span_id == attempt.span_id for _, s in steps)

    # An HTTP trigger with a traceparent header joins that trace through the frontend's span.
    with httpx.Client(headers=auth.headers(), base_url=f"http://{http_address}", timeout=WAIT) as http:
        answer = http.post(
            "/v1/runs", json={"task_id": "echo", "payload": 1}, headers={"traceparent": HTTP_CLIENT}
        )
    assert answer.status_code == 200, answer.text
    http_trace = tracing.trace_id_of(HTTP_CLIENT)
    assert answer.json()["run"]["trace_id"] == http_trace

    def http_span() -> list[tuple[str, trace_pb2.Span]]:
        return named(collector.in_trace(http_trace), "cairn.frontend.trigger echo")

    ((service, from_http),) = wait_for(http_span, WAIT, message="no frontend span for the HTTP trigger")
    assert from_http.parent_span_id == span_id_of(HTTP_CLIENT)


def test_without_export_an_http_trigger_stores_its_traceparent_header(cluster_factory: Any) -> None:
    http_address = f"127.0.0.1:{free_port()}"
    cluster: Cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": http_address})
    assert "traces: exported" not in cluster.logs()
    register(WorkerServiceStub(cluster.channel()), "w-trace-export", "echo")  # no worker polls
    with httpx.Client(headers=auth.headers(), base_url=f"http://{http_address}", timeout=WAIT) as http:
        answer = http.post("/v1/runs", json={"task_id": "echo"}, headers={"traceparent": HTTP_CLIENT})
        assert answer.status_code == 200, answer.text
        run = answer.json()["run"]
        assert run["trace_id"] == tracing.trace_id_of(HTTP_CLIENT)
        assert cluster.sql_value("SELECT traceparent FROM runs WHERE id = $1::uuid", run["id"]) == HTTP_CLIENT
        # An invalid header is ignored, as W3C asks: the run starts a trace of its own.
        other = http.post("/v1/runs", json={"task_id": "echo"}, headers={"traceparent": "00-nope-01"})
        assert other.status_code == 200, other.text
        assert other.json()["run"]["trace_id"] not in ("", run["trace_id"])
