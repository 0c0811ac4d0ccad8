"""worker_sdk/_tracing.py without a cluster: the SDK works without the otel
extra (spans become no-ops, and a run triggered inside an attempt still carries
the attempt's trace context), and with it the trigger span's context fills
options.traceparent unless the caller set one. Each case runs in a fresh
interpreter, so hiding OpenTelemetry or setting a tracer provider touches no
other test."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cairn.v1 import common_pb2 as cpb
from worker_sdk import _requests
from worker_sdk.errors import InvalidArgumentError

HIDE_OTEL = "import sys\nsys.modules['opentelemetry'] = None  # import opentelemetry -> ImportError\n"


def run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_sdk_works_without_opentelemetry() -> None:
    out = run_python(
        HIDE_OTEL
        + """
import asyncio
import worker_sdk
from worker_sdk import _tracing
from cairn.v1 import common_pb2, worker_service_pb2
assert not _tracing.enabled()
given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
opts = common_pb2.TriggerOptions()
with _tracing.trigger_span(["t"], [opts]) as span:
    span.triggered(["r"])
assert opts.traceparent == "", opts  # no attempt, no span: history makes a new trace
with _tracing.step_span("r", 1, "s", 0):
    pass
attempt = _tracing.AttemptSpan(worker_service_pb2.AttemptAssignment(task_id="t", traceparent=given))

def in_attempt():
    child = common_pb2.TriggerOptions()
    _tracing.fill(child)
    return child.traceparent

assert attempt.context().run(in_attempt) == given  # a run triggered in a task joins its trace
async def done(): return None
async def main():
    task = asyncio.ensure_future(done())
    await task
    attempt.end(False, task)
asyncio.run(main())
print("ok")
"""
    )
    assert out == "ok"


def test_the_trigger_span_sends_its_context_unless_the_caller_set_one() -> None:
    out = run_python(
        """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from cairn import tracing
from cairn.v1 import common_pb2
from worker_sdk import _tracing

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
assert _tracing.enabled() and _tracing.current_traceparent() == ""
mine = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
empty, own = common_pb2.TriggerOptions(), common_pb2.TriggerOptions(traceparent=mine)
with _tracing.trigger_span(["a", "b"], [empty, own]) as span:
    span.triggered(["r1", "r2"])
(made,) = memory.get_finished_spans()
assert made.name == "cairn.trigger batch", made.name
assert dict(made.attributes) == {"cairn.task_ids": ("a", "b"), "cairn.run_ids": ("r1", "r2")}
assert tracing.parse(empty.traceparent).span_id == f"{made.context.span_id:016x}"
assert own.traceparent == mine
print("ok")
"""
    )
    assert out == "ok"


def test_a_bad_traceparent_option_is_refused_naming_it() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert _requests.trigger_options(traceparent=good) == cpb.TriggerOptions(traceparent=good)
    for bad in ("nope", 7):
        with pytest.raises(InvalidArgumentError, match=r"^runs\[2\]\.options\.traceparent: "):
            _requests.trigger_options(traceparent=bad, field="runs[2].options")  # type: ignore[arg-type]
