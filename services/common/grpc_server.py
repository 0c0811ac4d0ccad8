"""Starting a service's gRPC server with the standard health service, server
reflection and call metrics, and running it until SIGINT or SIGTERM, then
shutting it down gracefully (serve, Draining)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cairn import addresses
from services.common import internal_auth
from services.common.config import DEFAULT_SHUTDOWN_GRACE
from services.common.metrics import GrpcMetrics

log = logging.getLogger("cairn.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Without SO_REUSEPORT a second server on a taken port fails to start instead of
# silently sharing the port's connections with the first.
SERVER_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]


def make_server(
    listen: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    local: str | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server on `listen` with the services `register` adds, plus health and
    reflection; every call passes the interceptors, the first outermost, inside
    the call metrics (GrpcMetrics: calls by method and status code, timed).
    With credentials (services/common/tls.py) `listen` serves TLS only; local
    is another address served in plaintext (a unix socket in a private folder,
    for the process's own calls)."""
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[GrpcMetrics(), *interceptors])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if credentials is not None:
        port = server.add_secure_port(listen, credentials)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    if local is not None and server.add_insecure_port(local) == 0:
        raise RuntimeError(f"cannot listen on {local}")
    return server, health_servicer


def channel(address: str, credential: str = "") -> grpc.aio.Channel:
    """An insecure channel to another service of the cluster: host:port, a gRPC
    target such as dns:///history:7375, or a comma-separated list of replicas
    (host names resolved now), balanced round-robin; every call on it carries
    the cluster's internal credential, when there is one (internal_auth.py)."""
    return internal_auth.credentialed(
        grpc.aio.insecure_channel(
            addresses.channel_target(address, "service"),
            options=[*CHANNEL_OPTIONS, *addresses.RECONNECT_OPTIONS, ("grpc.lb_policy_name", "round_robin")],
        ),
        credential,
    )


class Draining:
    """Whether this process has begun to shut down: serve() begins it on SIGINT
    or SIGTERM, after the health service says NOT_SERVING and the server stops
    taking new calls. The calls that would hold a shutdown for their whole wait,
    the long polls (PollAttempt, WaitRun) and the streams (WatchRun, WatchRuns),
    each hook the wake-up they wait on (`hook`), so they end at once with an
    answer their client handles: an empty poll, a WaitRun not done yet, a
    stream ended UNAVAILABLE (which the SDK reconnects after its last event)."""

    def __init__(self) -> None:
        self._begun = False
        self._hooks: set[Callable[[], None]] = set()

    def is_set(self) -> bool:
        return self._begun

    def add_hook(self, wake: Callable[[], None]) -> None:
        """Calls wake when draining begins (at once when it has); unhook it after."""
        self._hooks.add(wake)
        if self._begun:
            wake()

    def unhook(self, wake: Callable[[], None]) -> None:
        self._hooks.discard(wake)

    @contextlib.contextmanager
    def hook(self, wake: Callable[[], None]) -> Iterator[None]:
        """add_hook(wake) while inside."""
        self.add_hook(wake)
        try:
            yield
        finally:
            self.unhook(wake)

    def begin(self) -> None:
        """Wakes every hooked wait; later hooks are woken as they come."""
        if self._begun:
            return
        self._begun = True
        for wake in list(self._hooks):
            wake()


async def serve(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    service_names: Iterable[str],
    name: str,
    listen: str,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    *,
    grace: float = DEFAULT_SHUTDOWN_GRACE,
    draining: Draining | None = None,
    also_drain: Callable[[float], Awaitable[None]] | None = None,
    watch_health: Callable[[Callable[[bool], Awaitable[None]]], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Serves until SIGINT/SIGTERM, then shuts down within `grace` seconds:
    the health service says NOT_SERVING first (a load balancer or probe stops
    sending), the server stops taking new calls, `draining` begins (long polls
    and streams end at once, see Draining), and the calls in flight get what is
    left of the grace to finish (also_drain(grace), e.g. the frontend's HTTP
    API, drains alongside); what is still running then is cancelled. on_stop
    then closes what the service holds (database pool, NATS).

    Health: SERVING once started, unless watch_health is given: then
    NOT_SERVING from the start until watch_health, run for as long as the
    process serves with a function that sets SERVING (True) or NOT_SERVING
    (False), says otherwise (the frontend's follows history and matching)."""
    names = [*service_names, ""]

    async def set_serving(serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for svc in names:
            await health_servicer.set(svc, status)  # ignored once in graceful shutdown

    if watch_health is not None:  # not SERVING (grpc's default for "") before the watcher says so
        await set_serving(False)
    await server.start()
    watcher: asyncio.Task[None] | None = None
    if watch_health is not None:
        watcher = asyncio.create_task(watch_health(set_serving))
    if watcher is None:
        await set_serving(True)
    log.info("%s serving on %s", name, listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    started = time.monotonic()
    log.info("%s stopping: NOT_SERVING, finishing the calls in flight (at most %gs)", name, grace)
    await health_servicer.enter_graceful_shutdown()
    if watcher is not None:
        watcher.cancel()
    stopping = asyncio.create_task(server.stop(grace))
    await asyncio.sleep(0)  # the server refuses new calls from here on
    if draining is not None:
        draining.begin()
    if also_drain is not None:
        await also_drain(grace)
    await stopping
    if watcher is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if on_stop is not None:
        await on_stop()
    log.info("%s stopped in %.1fs", name, time.monotonic() - started)
