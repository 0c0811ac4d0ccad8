"""Trace export set-up (services/common/otel.py) and the frontend's trigger
spans (services/frontend/trigger_spans.py), without a cluster: nothing is set
up without OTEL_EXPORTER_OTLP_ENDPOINT; with it but without the exporter, one
warning naming the extra and no crash; service.name from OTEL_SERVICE_NAME or
the process's own. The frontend's span is a SERVER child of the trigger's
traceparent (or a new trace's root) and becomes the run's traceparent; a
refusal records the error. The HTTP API passes on a valid `traceparent` only."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cairn import tracing
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from services.common import otel
from services.common.errors import ServiceError
from services.frontend.http.calls import forwarded
from services.frontend.routes import ROUTES, RUNS, path
from services.frontend.trigger_spans import TriggerSpans

ENDPOINT = "http://127.0.0.1:4317"
CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


@pytest.fixture(autouse=True)
def no_provider_left() -> Iterator[None]:
    yield
    otel.shutdown()


def test_nothing_is_set_up_without_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(otel.ENDPOINT, raising=False)
    with otel.exporting("cairn-frontend") as exporting:
        assert exporting is False
        assert otel.tracer("cairn.frontend") is None
    assert caplog.records == []


def test_without_the_exporter_one_warning_and_no_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(otel.ENDPOINT, ENDPOINT)
    monkeypatch.setitem(sys.modules, EXPORTER_MODULE, None)  # its import now raises ImportError
    with caplog.at_level(logging.WARNING, logger="cairn.otel"), otel.exporting("cairn-worker") as exporting:
        assert exporting is False
        assert otel.tracer("cairn.frontend") is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert otel.ENDPOINT in record.getMessage() and "pip install 'cairn[otel]'" in record.getMessage()


class Installed:
    """Stands in for OpenTelemetry's global provider: nothing global is changed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, current: Any = None) -> None:
        self.provider: Any = None
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: current or trace.ProxyTracerProvider())
        monkeypatch.setattr(trace, "set_tracer_provider", self.set)

    def set(self, provider: Any) -> None:
        self.provider = provider


@pytest.mark.parametrize("named, expected", [("", "cairn-history"), ("shop-history", "shop-history")])
def test_the_provider_exports_over_otlp_as_the_service(
    monkeypatch: pytest.MonkeyPatch, named: str, expected: str
) -> None:
    monkeypatch.setenv(otel.ENDPOINT, ENDPOINT)
    monkeypatch.setenv(otel.SERVICE_NAME, named)
    installed = Installed(monkeypatch)
    with otel.exporting("cairn-history") as exporting:
        assert exporting is True
        assert isinstance(installed.provider, TracerProvider)
        assert installed.provider.resource.attributes["service.name"] == expected
        assert otel.tracer("cairn.frontend") is not None
    assert otel.tracer("cairn.frontend") is None  # shut down with the block


def test_an_applications_own_provider_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(otel.ENDPOINT, ENDPOINT)
    installed = Installed(monkeypatch, current=TracerProvider())
    with otel.exporting("cairn-worker") as exporting:
        assert exporting is False and installed.provider is None


# ---- the frontend's spans -----------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TriggerSpans, InMemorySpanExporter]:
    provider = TracerProvider()  # not the global one
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return TriggerSpans(ROUTES, provider.get_tracer("cairn.frontend")), memory


def answer(*run_ids: str) -> list[rpb.TriggerRunResponse]:
    return [rpb.TriggerRunResponse(run=cpb.Run(id=r)) for r in run_ids]


def context_of(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def test_only_the_two_trigger_methods_are_traced(spans: tuple[TriggerSpans, InMemorySpanExporter]) -> None:
    assert sorted(spans[0].routes) == [path(RUNS, "BatchTriggerRuns"), path(RUNS, "TriggerRun")]


def test_a_triggers_span_is_the_child_of_its_traceparent_and_the_runs_context(
    spans: tuple[TriggerSpans, InMemorySpanExporter],
) -> None:
    interceptor, memory = spans
    sent: list[str] = []

    async def behaviour(request: rpb.TriggerRunRequest, context: Any) -> rpb.TriggerRunResponse:
        sent.append(request.options.traceparent)
        return answer("run-1")[0]

    wrapped = interceptor.wrap(ROUTES[path(RUNS, "TriggerRun")], behaviour)
    request = rpb.TriggerRunRequest(task_id="pay", options=cpb.TriggerOptions(traceparent=CLIENT))
    asyncio.run(wrapped(request, None))  # type: ignore[arg-type]
    (span,) = memory.get_finished_spans()
    assert span.name == "cairn.frontend.trigger pay" and span.kind == trace.SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == int(CLIENT.split("-")[2], 16)
    trace_id, span_id = context_of(span)
    assert trace_id == tracing.trace_id_of(CLIENT)
    assert sent == [f"00-{trace_id}-{span_id}-01"]
    assert span.attributes is not None and span.attributes["cairn.run_id"] == "run-1"


def test_each_batch_item_gets_a_span_and_one_without_context_a_new_trace(
    spans: tuple[TriggerSpans, InMemorySpanExporter],
) -> None:
    interceptor, memory = spans

    async def behaviour(request: rpb.BatchTriggerRunsRequest, context: Any) -> rpb.BatchTriggerRunsResponse:
        return rpb.BatchTriggerRunsResponse(runs=answer("a", "b"))

    wrapped = interceptor.wrap(ROUTES[path(RUNS, "BatchTriggerRuns")], behaviour)
    batch = rpb.BatchTriggerRunsRequest(
        runs=[
            rpb.TriggerRunRequest(task_id="a", options=cpb.TriggerOptions(traceparent=CLIENT)),
            rpb.TriggerRunRequest(task_id="b"),
        ]
    )
    asyncio.run(wrapped(batch, None))  # type: ignore[arg-type]
    first, second = memory.get_finished_spans()
    assert [first.name, second.name] == ["cairn.frontend.trigger a", "cairn.frontend.trigger b"]
    assert first.parent is not None and second.parent is None
    assert [tracing.trace_id_of(r.options.traceparent) for r in batch.runs] == [
        context_of(first)[0],
        context_of(second)[0],
    ]
    assert context_of(second)[0] != tracing.trace_id_of(CLIENT)


def test_a_refused_trigger_records_the_error(spans: tuple[TriggerSpans, InMemorySpanExporter]) -> None:
    interceptor, memory = spans

    async def behaviour(request: Any, context: Any) -> Any:
        raise ServiceError(grpc.StatusCode.NOT_FOUND, "task: no worker declared it")

    wrapped = interceptor.wrap(ROUTES[path(RUNS, "TriggerRun")], behaviour)
    with pytest.raises(ServiceError):
        asyncio.run(wrapped(rpb.TriggerRunRequest(task_id="t"), None))  # type: ignore[arg-type]
    (span,) = memory.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize(
    "headers, metadata",
    [
        ({"traceparent": CLIENT}, ((tracing.METADATA_KEY, CLIENT),)),
        ({"traceparent": "garbage"}, ()),
        ({"traceparent": "00-ü-01"}, ()),
        ({}, ()),
    ],
)
def test_the_http_api_passes_on_a_valid_traceparent(
    headers: dict[str, str], metadata: tuple[tuple[str, str], ...]
) -> None:
    assert forwarded(headers) == metadata
