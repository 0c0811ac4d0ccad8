"""OpenTelemetry trace export of a Cairn process (the three services and
`cairn worker`): when OTEL_EXPORTER_OTLP_ENDPOINT is set and the `otel` extra
is installed, `exporting(name)` installs a global TracerProvider that sends
spans in batches (BatchSpanProcessor) through the standard OTLP/gRPC exporter,
and flushes them when the process's work ends. service.name is
OTEL_SERVICE_NAME, else the process's own ("cairn-frontend", "cairn-worker",
...); the exporter and the batching read their usual OTEL_EXPORTER_OTLP_* and
OTEL_BSP_* variables. An application that set its own provider first keeps it.

Without the variable nothing is set up and tracer() is None, so the frontend
adds no span work to any call; with the variable but without OpenTelemetry,
one warning and nothing else. OpenTelemetry is imported only here, in setup,
so a process that exports nothing never loads it; nothing server-only is
imported, because `cairn worker` runs on hosts without the server extra."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME = "OTEL_SERVICE_NAME"
INSTALL = "pip install 'cairn[otel]'"

log = logging.getLogger("cairn.otel")
_provider: Any = None  # the TracerProvider setup() installed, until shutdown()


def setup(default_name: str) -> bool:
    """Installs the OTLP-exporting provider when OTEL_EXPORTER_OTLP_ENDPOINT is
    set; whether this process now exports spans through it."""
    global _provider
    if _provider is not None:
        return True
    endpoint = os.environ.get(ENDPOINT, "").strip()
    if not endpoint:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "%s is set but OpenTelemetry is not installed (%s): no spans are exported; %s",
            ENDPOINT,
            exc,
            INSTALL,
        )
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        log.info("traces: the application's own tracer provider is kept (%s not used)", ENDPOINT)
        return False
    name = os.environ.get(SERVICE_NAME, "").strip() or default_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("traces: exported over OTLP to %s as service.name %s", endpoint, name)
    return True


def tracer(name: str) -> Any:
    """A tracer of the provider setup() installed (an opentelemetry.trace.Tracer),
    or None when this process exports no spans."""
    return None if _provider is None else _provider.get_tracer(name)


def shutdown() -> None:
    """Exports the spans still buffered and stops the provider (blocks up to the
    exporter's timeout when the collector is unreachable)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


@contextmanager
def exporting(default_name: str) -> Iterator[bool]:
    """setup() for the block, which runs the process's work; shutdown() after it,
    however it ends."""
    try:
        yield setup(default_name)
    finally:
        shutdown()
