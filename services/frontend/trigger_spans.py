"""The frontend's spans, only while it exports traces (services/common/otel.py;
main.py adds this interceptor then, so without it no call pays anything): a
span "cairn.frontend.trigger <task>" (kind SERVER) per run of a TriggerRun or
BatchTriggerRuns call, a child of the run's trace context as the client sent it
(options.traceparent, or the call's `traceparent` metadata that
NamespaceDefaulting put there), or the root of a new trace when none came. The
span's own context then replaces options.traceparent, so the run stores it and
the worker's "cairn.attempt" span is its child: client -> frontend -> worker
in one trace. Innermost of the interceptors, so the request is already valid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cairn import tracing
from cairn.v1 import run_service_pb2 as rpb
from services.frontend.interceptors import Behaviour, Context, RouteInterceptor, StreamBehaviour
from services.frontend.routes import RUNS, Route, path

try:  # the otel extra; without it otel.tracer() is None and main.py never adds TriggerSpans
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:
    pass

TRACED = {path(RUNS, "TriggerRun"): False, path(RUNS, "BatchTriggerRuns"): True}  # path: a batch?


def start_span(
    tracer: trace.Tracer, propagator: TraceContextTextMapPropagator, item: rpb.TriggerRunRequest
) -> trace.Span:
    """The span of one run's trigger, its context now the run's traceparent."""
    sent = item.options.traceparent
    parent = propagator.extract({tracing.METADATA_KEY: sent}) if sent else otel_context.Context()
    span = tracer.start_span(
        f"cairn.frontend.trigger {item.task_id}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"cairn.task_id": item.task_id, "cairn.namespace": item.namespace},
    )
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=trace.set_span_in_context(span))
    if tracing.is_valid(carrier.get(tracing.METADATA_KEY, "")):
        item.options.traceparent = carrier[tracing.METADATA_KEY]
    return span


def end_spans(spans: Sequence[trace.Span], answers: Sequence[rpb.TriggerRunResponse]) -> None:
    for span, answer in zip(spans, answers, strict=True):
        span.set_attribute("cairn.run_id", answer.run.id)
        span.set_attribute("cairn.existing", answer.existing)  # an idempotency key's run, traced before
        span.end()


def fail_spans(spans: Sequence[trace.Span], error: BaseException) -> None:
    for span in spans:
        if isinstance(error, Exception):
            span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()


class TriggerSpans(RouteInterceptor):
    """Wraps TriggerRun and BatchTriggerRuns with their runs' spans; nothing else."""

    def __init__(self, routes: dict[str, Route], tracer: trace.Tracer) -> None:
        super().__init__({p: r for p, r in routes.items() if p in TRACED})
        self.tracer = tracer
        self.propagator = TraceContextTextMapPropagator()

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        batch = TRACED[route.path]

        async def traced(request: Any, context: Context) -> Any:
            items = list(request.runs) if batch else [request]
            spans = [start_span(self.tracer, self.propagator, item) for item in items]
            try:
                response = await behaviour(request, context)
            except BaseException as exc:
                fail_spans(spans, exc)
                raise
            end_spans(spans, list(response.runs) if batch else [response])
            return response

        return traced

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        return behaviour  # no streaming method is traced
