"""Starting a service's gRPC server with the standard health service, server
reflection and call metrics, and running it until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cairn import addresses
from services.common import internal_auth
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


async def serve(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    service_names: Iterable[str],
    name: str,
    listen: str,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serves until SIGINT/SIGTERM, then stops taking calls and shuts down."""
    await server.start()
    for svc in [*service_names, ""]:
        await health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on %s", name, listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=2)
    if on_stop is not None:
        await on_stop()
