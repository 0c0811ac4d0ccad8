"""Every Prometheus metric the services export, defined once (names cairn_*),
in prometheus_client's default registry, and the /metrics endpoint of history
and matching (`--metrics-address`; the frontend serves the same registry on its
HTTP port).

Runs are counted where history announces committed transitions
(services/history/notify.py), so each is counted once, after its commit. Queue
depth and executing runs are read by matching at scrape time
(services/matching/queue_metrics.py, with the families made here). gRPC calls
are counted by one server interceptor on every service (GrpcMetrics, added by
services/common/grpc_server.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import prometheus_client
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("cairn.metrics")

# _created series would double every counter and histogram in Prometheus's text
# format for a value nobody graphs.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

RUN_LABELS = ("namespace", "task", "queue")

# ---- runs (history, services/history/notify.py) --------------------------------------

RUNS_TRIGGERED = Counter(
    "cairn_runs_triggered",
    "Runs created: by a trigger, a batch trigger, a schedule's tick or a parent's children wait "
    "(a trigger answered by an existing run's idempotency key is not counted).",
    RUN_LABELS,
)
RUNS_STARTED = Counter(
    "cairn_runs_started",
    "Attempts started: a run turned executing on a worker (each attempt of a run counts).",
    RUN_LABELS,
)
RUNS_COMPLETED = Counter("cairn_runs_completed", "Runs that ended completed.", RUN_LABELS)
RUNS_FAILED = Counter("cairn_runs_failed", "Runs that ended failed (retries used up).", RUN_LABELS)
RUNS_CANCELED = Counter("cairn_runs_canceled", "Runs that ended canceled.", RUN_LABELS)
RUNS_ENDED = Counter(
    "cairn_runs_ended",
    "Runs that reached a terminal status, by that status (completed, failed, canceled, crashed, "
    "timed_out, expired).",
    (*RUN_LABELS, "status"),
)
_ENDED_BY_STATUS = {"completed": RUNS_COMPLETED, "failed": RUNS_FAILED, "canceled": RUNS_CANCELED}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DISPATCH_SECONDS = Histogram(
    "cairn_dispatch_latency_seconds",
    "From a run becoming ready (its queue entry's available time) to its attempt starting, "
    "both read from PostgreSQL's clock.",
    ("namespace", "queue"),
    buckets=LATENCY_BUCKETS,
)
STEP_RECORD_SECONDS = Histogram(
    "cairn_step_record_seconds",
    "History's time to record a step: from receiving the write to its commit (in a BatchWrite, "
    "with the batch's other writes).",
    buckets=LATENCY_BUCKETS,
)

# ---- the database and group commit (history) -----------------------------------------

DB_TRANSACTION_SECONDS = Histogram(
    "cairn_db_transaction_seconds",
    "Duration of a group-commit transaction (operation: trigger, start, write) from acquiring a "
    "connection to its commit; a lone write is its own transaction.",
    ("operation",),
    buckets=LATENCY_BUCKETS,
)
GROUP_COMMIT_BATCH_SIZE = Histogram(
    "cairn_group_commit_batch_size",
    "Writes per group-commit transaction (operation: trigger, start, write).",
    ("operation",),
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

# ---- NATS (every service, services/common/bus.py) ------------------------------------

NATS_CONNECTED = Gauge("cairn_nats_connected", "1 while this process is connected to NATS, else 0.")
NATS_DISCONNECTS = Counter("cairn_nats_disconnects", "Times this process lost its NATS connection.")
NATS_DROPPED = Counter(
    "cairn_nats_dropped_messages",
    "Notifications not published because NATS was unreachable (the database sweeps cover them).",
)

# ---- gRPC (every service, GrpcMetrics) ------------------------------------------------

GRPC_HANDLED = Counter(
    "cairn_grpc_server_handled",
    "gRPC calls this server finished, by service, method and status code.",
    ("grpc_service", "grpc_method", "grpc_code"),
)
GRPC_HANDLING_SECONDS = Histogram(
    "cairn_grpc_server_handling_seconds",
    "Time from a gRPC call's arrival to its answer (long-polls included), by service and method.",
    ("grpc_service", "grpc_method"),
    buckets=LATENCY_BUCKETS,
)

# ---- queues (matching, read at scrape time) -------------------------------------------

QUEUE_DEPTH = "cairn_queue_depth"
QUEUE_DEPTH_HELP = "Runs waiting in the queue's ready set (queued, claimed or not)."
QUEUE_EXECUTING = "cairn_queue_executing"
QUEUE_EXECUTING_HELP = "Runs of the queue executing now."


def queue_families(rows: Iterable[tuple[str, str, int, int]]) -> list[Metric]:
    """cairn_queue_depth and cairn_queue_executing from (namespace, queue, depth,
    executing) rows, for a collector that reads them at scrape time."""
    depth = GaugeMetricFamily(QUEUE_DEPTH, QUEUE_DEPTH_HELP, labels=["namespace", "queue"])
    executing = GaugeMetricFamily(QUEUE_EXECUTING, QUEUE_EXECUTING_HELP, labels=["namespace", "queue"])
    for namespace, queue, waiting, running in rows:
        depth.add_metric([namespace, queue], waiting)
        executing.add_metric([namespace, queue], running)
    return [depth, executing]


#: Every metric name the services export (the Grafana dashboard's test reads it).
METRIC_NAMES = frozenset(
    [
        *(
            m._name
            for m in (
                RUNS_TRIGGERED,
                RUNS_STARTED,
                RUNS_COMPLETED,
                RUNS_FAILED,
                RUNS_CANCELED,
                RUNS_ENDED,
                DISPATCH_SECONDS,
                STEP_RECORD_SECONDS,
                DB_TRANSACTION_SECONDS,
                GROUP_COMMIT_BATCH_SIZE,
                NATS_CONNECTED,
                NATS_DISCONNECTS,
                NATS_DROPPED,
                GRPC_HANDLED,
                GRPC_HANDLING_SECONDS,
            )
        ),
        QUEUE_DEPTH,
        QUEUE_EXECUTING,
    ]
)


def run_created(namespace: str, task: str, queue: str) -> None:
    RUNS_TRIGGERED.labels(namespace, task, queue).inc()


def run_changed(run: Any) -> None:
    """Counts a committed run change by its new status: executing is an attempt
    started (with its dispatch latency when the row carries ready_at), a
    terminal status is a run ended."""
    status = run["status"]
    labels = (run["namespace"], run["task_id"], run["queue"])
    if status == "executing":
        RUNS_STARTED.labels(*labels).inc()
        ready_at = run.get("ready_at")
        if ready_at is not None:
            DISPATCH_SECONDS.labels(run["namespace"], run["queue"]).observe(
                max(0.0, (run["updated_at"] - ready_at).total_seconds())
            )
        return
    if status in _TERMINAL:
        RUNS_ENDED.labels(*labels, status).inc()
        counter = _ENDED_BY_STATUS.get(status)
        if counter is not None:
            counter.labels(*labels).inc()


_TERMINAL = frozenset(["completed", "failed", "canceled", "crashed", "timed_out", "expired"])


# ---- the gRPC server interceptor -----------------------------------------------------

if TYPE_CHECKING:
    MethodHandler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Any]

_CANCELLED = grpc.StatusCode.CANCELLED.name
_UNKNOWN = grpc.StatusCode.UNKNOWN.name


def _code_name(context: Any, default: str) -> str:
    """The status the handler left on its context (an abort or set_code), else default."""
    try:
        code = context.code()
    except Exception:  # a context without code(): count what the caller would see
        return default
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):  # grpc.aio may keep the numeric code
        for c in grpc.StatusCode:
            if c.value[0] == code:
                return str(c.name)
    return default


class _MethodMetrics:
    """The bound metric children of one method, so a call only looks up its code."""

    def __init__(self, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.service, self.method = service or "unknown", method
        self.seconds = GRPC_HANDLING_SECONDS.labels(self.service, self.method)
        self._handled: dict[str, Any] = {}

    def record(self, code: str, started: float) -> None:
        self.seconds.observe(time.perf_counter() - started)
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = GRPC_HANDLED.labels(self.service, self.method, code)
        counter.inc()


def _instrument(behaviour: Callable[..., Any], m: _MethodMetrics) -> Callable[..., Any]:
    """behaviour(request or request iterator, context), counted and timed: an
    async generator stays one, a coroutine function stays one; anything else
    (a synchronous handler) is returned unchanged."""
    if inspect.isasyncgenfunction(behaviour):

        async def streamed(request: Any, context: Any) -> Any:
            started, code = time.perf_counter(), _UNKNOWN
            try:
                async for item in behaviour(request, context):
                    yield item
                code = _code_name(context, "OK")
            except asyncio.CancelledError:
                code = _CANCELLED
                raise
            except BaseException:
                code = _code_name(context, _UNKNOWN)
                raise
            finally:
                m.record(code, started)

        return streamed
    if inspect.iscoroutinefunction(behaviour):

        async def called(request: Any, context: Any) -> Any:
            started, code = time.perf_counter(), _UNKNOWN
            try:
                result = await behaviour(request, context)
                code = _code_name(context, "OK")
                return result
            except asyncio.CancelledError:
                code = _CANCELLED
                raise
            except BaseException:
                code = _code_name(context, _UNKNOWN)
                raise
            finally:
                m.record(code, started)

        return called
    return behaviour


def _instrumented_handler(handler: MethodHandler, m: _MethodMetrics) -> MethodHandler:
    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, make in kinds.items():
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return make(
                _instrument(behaviour, m),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every call a server finishes by method and status code and times
    it (cairn_grpc_server_handled_total, cairn_grpc_server_handling_seconds).
    Outermost, so it sees the status the inner layers settled on. Each method's
    handler is wrapped once and cached; an unknown method (UNIMPLEMENTED by
    grpc itself) is not counted."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[MethodHandler, MethodHandler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        handler: MethodHandler | None = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _instrumented_handler(handler, _MethodMetrics(method))
        self._wrapped[method] = (handler, wrapped)
        return wrapped


# ---- /metrics ------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int] | None:
    """'host:port' (or '[v6]:port') as (host, port); '' as None (metrics off).
    ValueError naming what is wrong otherwise."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9375) or empty for off, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"the port of {text!r} must be a number from 0 to 65535")
    return host, int(port)


class MetricsServer:
    """prometheus_client's HTTP server for /metrics on its own thread (a scrape
    never waits for the event loop, except a collector that asks it)."""

    def __init__(self, address: str) -> None:
        parsed = parse_address(address)
        assert parsed is not None
        host, port = parsed
        self.server, self.thread = prometheus_client.start_http_server(port, addr=host)
        self.address = f"{host}:{self.server.server_port}"
        log.info("metrics on http://%s/metrics", self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class LoopCollector(Collector):
    """A collector whose samples come from a coroutine on the service's event
    loop (e.g. a database read), run from the scrape's thread. A read that fails
    or takes longer than `timeout` leaves its metrics out of that scrape (and
    is logged) rather than failing the whole scrape."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[], Any],
        families: Callable[[Any], list[Metric]],
        timeout: float = 5.0,
    ) -> None:
        self.loop, self.read, self.families, self.timeout = loop, read, families, timeout
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return self.families([])  # names only: registration must not touch the loop

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            future = asyncio.run_coroutine_threadsafe(self.read(), self.loop)
            try:
                rows = future.result(timeout=self.timeout)
            except Exception as exc:
                future.cancel()
                log.warning("metrics read failed: %s", exc or type(exc).__name__)
                return
        yield from self.families(rows)
