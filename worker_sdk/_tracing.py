"""OpenTelemetry spans of the SDK, when the optional `otel` extra is installed
(`pip install cairn[otel]`); without it everything here costs next to nothing
and the SDK works the same.

- A trigger (AsyncClient.trigger, batch_trigger, Task.trigger) runs in a span
  "cairn.trigger <task>" (kind PRODUCER) under the caller's current span, and
  sends that span's W3C context as TriggerOptions.traceparent unless the caller
  set one; the frontend and history store it on the run.
- An attempt runs in a span "cairn.attempt <task>" (kind CONSUMER) whose parent
  is the run's trace context (AttemptAssignment.traceparent), with the
  attributes cairn.run_id, cairn.task_id and cairn.attempt; the task function
  runs with it current, so the user's own spans nest under it.
- Each live step runs in a span "cairn.step <name>" with cairn.step.position.
- A failed attempt or step records its exception and sets the ERROR status.

Without OpenTelemetry (or without an SDK configured), a run triggered from a
task still joins the task's trace: its trigger carries the attempt's traceparent.
The spans are exported by whatever TracerProvider the application configured;
Cairn sets none up in the SDK (see the README's "Traces")."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cairn import tracing
from cairn.v1 import common_pb2, worker_service_pb2

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _TRACER: trace.Tracer | None = trace.get_tracer("cairn.worker_sdk")  # a proxy until a provider is set
    _PROPAGATOR: TraceContextTextMapPropagator | None = TraceContextTextMapPropagator()
except ImportError:  # the otel extra is not installed
    _TRACER = None
    _PROPAGATOR = None

RUN_ID = "cairn.run_id"
TASK_ID = "cairn.task_id"
ATTEMPT = "cairn.attempt"
STEP_NAME = "cairn.step.name"
STEP_POSITION = "cairn.step.position"

# The trace context of the attempt the current task runs in ('' outside one).
_assigned: contextvars.ContextVar[str] = contextvars.ContextVar("cairn_traceparent", default="")


def enabled() -> bool:
    """Whether OpenTelemetry is installed (spans may still be no-ops)."""
    return _TRACER is not None


def _recording() -> bool:
    """Whether spans are worth making: OpenTelemetry is installed and the
    application set a TracerProvider. Until then every span would be a no-op,
    and skipping them keeps an attempt's cost what it is without the extra."""
    return _TRACER is not None and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def current_traceparent() -> str:
    """The W3C context to trigger a run in: the current span's when it is a
    valid one, else the running attempt's, else ''."""
    if _PROPAGATOR is not None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        if tracing.is_valid(carrier.get(tracing.METADATA_KEY, "")):
            return carrier[tracing.METADATA_KEY]
    return _assigned.get()


def fill(options: common_pb2.TriggerOptions) -> None:
    """Sets options.traceparent to the current context unless the caller set one."""
    if not options.traceparent and (traceparent := current_traceparent()):
        options.traceparent = traceparent  # only then: setting '' would mark options as sent


class TriggerSpan:
    """The span of a trigger call (None without OpenTelemetry)."""

    def __init__(self, span: Any) -> None:
        self.span = span

    def triggered(self, run_ids: Sequence[str]) -> None:
        """Names the runs the call created (or found by idempotency key)."""
        if self.span is None:
            return
        if len(run_ids) == 1:
            self.span.set_attribute(RUN_ID, run_ids[0])
        else:
            self.span.set_attribute("cairn.run_ids", list(run_ids))


@contextmanager
def trigger_span(
    task_ids: Iterable[str], options: Iterable[common_pb2.TriggerOptions]
) -> Iterator[TriggerSpan]:
    """The span of triggering runs of task_ids (one name for one task); each of
    `options` without a traceparent gets the span's context."""
    tasks = sorted(set(task_ids))
    if _TRACER is None or not _recording():
        for o in options:
            fill(o)
        yield TriggerSpan(None)
        return
    label = tasks[0] if len(tasks) == 1 else "batch"
    attributes: dict[str, Any] = {TASK_ID: tasks[0]} if len(tasks) == 1 else {"cairn.task_ids": tasks}
    with _TRACER.start_as_current_span(
        f"cairn.trigger {label}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        for o in options:
            fill(o)
        yield TriggerSpan(span)


class AttemptSpan:
    """The span of one attempt, current in the task function's asyncio task."""

    def __init__(self, assignment: worker_service_pb2.AttemptAssignment) -> None:
        self.traceparent = assignment.traceparent
        self.span: Any = None
        if _TRACER is not None and _PROPAGATOR is not None and _recording():
            parent = _PROPAGATOR.extract({tracing.METADATA_KEY: assignment.traceparent})
            self.span = _TRACER.start_span(
                f"cairn.attempt {assignment.task_id}",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    RUN_ID: assignment.run_id,
                    TASK_ID: assignment.task_id,
                    ATTEMPT: assignment.attempt,
                },
            )

    def context(self) -> contextvars.Context:
        """A copy of the current context with this attempt's span current: the
        context to run the task function's asyncio task in."""
        ctx = contextvars.copy_context()
        ctx.run(self._enter)
        return ctx

    def _enter(self) -> None:
        _assigned.set(self.traceparent)
        if self.span is not None:
            otel_context.attach(
                trace.set_span_in_context(self.span)
            )  # the task's context copy: never detached

    def end(self, suspended: bool, fn_task: asyncio.Task[Any]) -> None:
        """Ends the span with how the attempt ended: cairn.outcome, and for a
        failure its error as an exception event and the ERROR status."""
        if self.span is None:
            return
        span, outcome = self.span, "superseded"
        if suspended:
            outcome = "suspended"
        elif fn_task.done() and not fn_task.cancelled() and fn_task.exception() is None:
            result = fn_task.result()
            if isinstance(result, worker_service_pb2.FinishAttemptRequest):
                outcome = "completed"
                if result.outcome == worker_service_pb2.ATTEMPT_OUTCOME_FAILED:
                    outcome = "failed"
                    error = result.error
                    span.add_event(
                        "exception",
                        {
                            "exception.type": error.type,
                            "exception.message": error.message,
                            "exception.stacktrace": error.stack_trace,
                        },
                    )
                    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{error.type}: {error.message}"))
        span.set_attribute("cairn.outcome", outcome)
        span.end()


@contextmanager
def step_span(run_id: str, attempt: int, name: str, position: int) -> Iterator[None]:
    """The span of a live step's body (its tries and its record). A step that
    fails records its body's exception and the ERROR status; a BaseException (the
    attempt abandoned, suspended or cancelled) ends it without either."""
    if _TRACER is None or not _recording():
        yield
        return
    attributes: dict[str, str | int] = {
        RUN_ID: run_id,
        ATTEMPT: attempt,
        STEP_NAME: name,
        STEP_POSITION: position,
    }
    with _TRACER.start_as_current_span(
        f"cairn.step {name}", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield
        except Exception as exc:
            # The body's own error, not the StepFailedError the task sees.
            error = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
