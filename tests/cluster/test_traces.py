"""Traces (issue 12), against a real cluster: with the otel extra and an
in-memory exporter in this process, a run triggered inside a user's span forms
one trace from the client's trigger to the steps on a worker running in this
process (user span -> cairn.trigger -> cairn.attempt -> cairn.step x2), and the
Run's trace_id is that trace's id. A gRPC client that only sends `traceparent`
metadata joins its trace through the frontend; a run triggered without any
context still has a trace_id (the CLI's `runs get --json` shows it); an invalid
options.traceparent is refused naming the field and writes nothing. A failed
step and attempt record the exception with the ERROR status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from api_helpers import register
from harness import Cluster, cairn_cli
from harness.waiting import wait_for_async
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cairn import tracing
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1.worker_service_pb2_grpc import WorkerServiceStub
from worker_sdk import AsyncClient, Client, Retry, Worker, step, task

WAIT = 30.0
HEADER_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@step(name="fetch")
async def fetch(x: int) -> int:
    with trace.get_tracer("user-code").start_as_current_span("user.inside-step"):
        return x + 1


@step(name="double")
async def double(x: int) -> int:
    return x * 2


@task(id="traced-two-steps")
async def two_steps(payload: dict[str, int]) -> int:
    return await double(await fetch(payload["x"]))


@step(name="explode")
async def explode() -> None:
    raise RuntimeError("the step broke")


@task(id="traced-failing", retry=Retry(max_attempts=1))
async def failing(payload: Any) -> None:
    await explode()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """An in-memory exporter on this process's tracer provider (set once per
    process: OpenTelemetry allows one global provider)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def with_worker(cluster: Cluster, body: Any) -> Any:
    """Runs body() while a worker of this module's tasks serves in this process."""
    worker = Worker([two_steps, failing], address=cluster.address, slots=4, grace=1)
    serving = asyncio.create_task(worker.run())

    async def registered() -> bool | None:
        query = "SELECT count(*) FROM tasks WHERE task_id = ANY($1::text[])"
        return await asyncio.to_thread(cluster.sql_value, query, list(worker.tasks)) == 2 or None

    try:
        await wait_for_async(registered, WAIT, message="the in-process worker never registered")
        return await body()
    finally:
        worker.stop()
        await asyncio.wait_for(serving, WAIT)


async def ended(exporter: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    """The finished spans named `name`, once there are `count` of them."""

    async def found() -> list[ReadableSpan] | None:
        named = [s for s in exporter.get_finished_spans() if s.name == name]
        return named if len(named) >= count else None

    return await wait_for_async(found, WAIT, message=f"no {count} finished span(s) {name!r}")


def test_one_runs_spans_form_one_trace_from_the_trigger_to_the_steps(
    cluster: Cluster, spans: InMemorySpanExporter
) -> None:
    user_tracer = trace.get_tracer("user-app")

    async def body() -> tuple[Any, Any]:
        async with AsyncClient(address=cluster.address) as client:
            with user_tracer.start_as_current_span("user.checkout"):
                run = await client.trigger(two_steps, {"x": 20})
            done = await client.wait(run.id, timeout=WAIT)
            await ended(spans, "cairn.attempt traced-two-steps")
            return run, done

    run, done = asyncio.run(with_worker(cluster, body))
    assert done.status == "completed" and done.output == 42
    by_name = {s.name: s for s in spans.get_finished_spans()}
    user = by_name["user.checkout"]
    trigger = by_name["cairn.trigger traced-two-steps"]
    attempt = by_name["cairn.attempt traced-two-steps"]
    fetch_span, double_span = by_name["cairn.step fetch"], by_name["cairn.step double"]
    inside = by_name["user.inside-step"]

    # One trace, and it is the run's.
    trace_id = hex_trace(user)
    assert {hex_trace(s) for s in (trigger, attempt, fetch_span, double_span, inside)} == {trace_id}
    assert run.trace_id == done.trace_id == trace_id

    # user span -> cairn.trigger -> cairn.attempt -> each step (-> the user's span in a step).
    assert parent_of(trigger) == span_id(user)
    assert parent_of(attempt) == span_id(trigger)
    assert parent_of(fetch_span) == span_id(attempt) and parent_of(double_span) == span_id(attempt)
    assert parent_of(inside) == span_id(fetch_span)
    assert trigger.kind == SpanKind.PRODUCER and attempt.kind == SpanKind.CONSUMER

    # Attributes: run id, task and attempt.
    assert trigger.attributes is not None and attempt.attributes is not None
    assert trigger.attributes["cairn.task_id"] == "traced-two-steps"
    assert trigger.attributes["cairn.run_id"] == run.id
    assert dict(attempt.attributes) == {
        "cairn.run_id": run.id,
        "cairn.task_id": "traced-two-steps",
        "cairn.attempt": 1,
        "cairn.outcome": "completed",
    }
    for position, s in enumerate((fetch_span, double_span)):
        assert s.attributes is not None
        assert s.attributes["cairn.step.position"] == position
        assert (s.attributes["cairn.run_id"], s.attributes["cairn.attempt"]) == (run.id, 1)
    assert all(s.status.status_code != StatusCode.ERROR for s in by_name.values())


def test_a_failed_step_and_attempt_record_the_exception(
    cluster: Cluster, spans: InMemorySpanExporter
) -> None:
    async def body() -> Any:
        async with AsyncClient(address=cluster.address) as client:
            run = await client.trigger(failing, None)
            done = await client.wait(run.id, timeout=WAIT)
            await ended(spans, "cairn.attempt traced-failing")
            return done

    done = asyncio.run(with_worker(cluster, body))
    assert done.status == "failed"
    by_name = {s.name: s for s in spans.get_finished_spans()}
    failed_step, attempt = by_name["cairn.step explode"], by_name["cairn.attempt traced-failing"]
    assert hex_trace(attempt) == done.trace_id
    for s in (failed_step, attempt):
        assert s.status.status_code == StatusCode.ERROR, s.name
        assert [e.name for e in s.events] == ["exception"], s.name
    assert failed_step.events[0].attributes is not None
    assert failed_step.events[0].attributes["exception.type"] == "RuntimeError"
    assert attempt.attributes is not None and attempt.attributes["cairn.outcome"] == "failed"


def stub(cluster: Cluster) -> rgrpc.RunServiceStub:
    return rgrpc.RunServiceStub(cluster.channel())


def test_the_trace_context_through_the_frontend(cluster: Cluster, spans: InMemorySpanExporter) -> None:
    """No worker polls here: the runs stay queued, only their trace context counts."""
    register(WorkerServiceStub(cluster.channel()), "w-traces", "traced-two-steps")
    runs = stub(cluster)

    # A gRPC client that only propagates W3C context in its metadata joins that trace ...
    request = rpb.TriggerRunRequest(task_id="traced-two-steps")
    run = runs.TriggerRun(request, metadata=[("traceparent", HEADER_PARENT)], timeout=WAIT).run
    assert run.trace_id == tracing.trace_id_of(HEADER_PARENT)
    # ... unless the request names its own.
    own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    request.options.traceparent = own
    run = runs.TriggerRun(request, metadata=[("traceparent", HEADER_PARENT)], timeout=WAIT).run
    assert run.trace_id == tracing.trace_id_of(own)

    # No context at all: a new trace all the same, which the CLI shows.
    plain = runs.TriggerRun(rpb.TriggerRunRequest(task_id="traced-two-steps"), timeout=WAIT).run
    assert len(plain.trace_id) == 32 and int(plain.trace_id, 16) and plain.trace_id != run.trace_id
    proc = cairn_cli(cluster, "runs", "get", plain.id, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["trace_id"] == plain.trace_id

    # The synchronous Client traces under its caller's span too (its calls run on another thread).
    with Client(address=cluster.address) as client:
        with trace.get_tracer("user-app").start_as_current_span("user.sync") as user:
            synced = client.trigger("traced-two-steps", {"x": 1})
    (trigger,) = [s for s in spans.get_finished_spans() if s.name.startswith("cairn.trigger")]
    assert parent_of(trigger) == user.get_span_context().span_id
    assert synced.trace_id == f"{user.get_span_context().trace_id:032x}"

    # An invalid traceparent is refused, naming the field, and nothing is written.
    before = cluster.sql_value("SELECT count(*) FROM runs")
    bad = rpb.TriggerRunRequest(
        task_id="traced-two-steps", options=cpb.TriggerOptions(traceparent="00-not-a-trace-01")
    )
    with pytest.raises(grpc.RpcError) as info:
        runs.TriggerRun(bad, timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("options.traceparent: "), info.value.details()
    batch = rpb.BatchTriggerRunsRequest(runs=[rpb.TriggerRunRequest(task_id="traced-two-steps"), bad])
    with pytest.raises(grpc.RpcError) as info:
        runs.BatchTriggerRuns(batch, timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("runs[1].options.traceparent: "), info.value.details()
    assert cluster.sql_value("SELECT count(*) FROM runs") == before == 4
