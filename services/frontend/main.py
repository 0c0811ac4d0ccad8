"""The frontend process: the public gRPC API (with reflection and health), and
the HTTP JSON API (services/frontend/http) on --http-address."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import tempfile

import grpc

from services.common import bus as bus_mod
from services.common import grpc_server, internal_auth, logs, otel
from services.common import tls as tls_mod
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.common.tls import ServerTLS
from services.frontend import backend_health, interceptors
from services.frontend.auth import Authenticator
from services.frontend.backend import Backend
from services.frontend.caller_limits import key_limits
from services.frontend.handlers import Handlers
from services.frontend.http.server import DEFAULT_HTTP_ADDRESS, HttpServer, bind
from services.frontend.routes import ROUTES, SERVICES
from services.frontend.run_watch import RunWatcher
from services.frontend.serving import add_services
from services.frontend.trigger_spans import TriggerSpans

SERVICE_NAMES = [s.full_name for s in SERVICES]
HTTP_OFF = "off"
log = logging.getLogger("cairn.frontend")


def http_socket(address: str | None) -> socket.socket | None:
    """The HTTP API's socket: on `address` when one was given (a failure to
    listen there stops the frontend), else on the default address, where a
    port already taken (another frontend on this host) only costs the HTTP API
    of this one, with a warning; None for "off"."""
    if address == HTTP_OFF:
        return None
    try:
        return bind(address or DEFAULT_HTTP_ADDRESS)
    except OSError as exc:
        if address:
            raise SystemExit(f"cairn frontend: cannot serve HTTP on {address}: {exc}") from None
        log.warning("HTTP API not served: %s is taken (%s); set --http-address", DEFAULT_HTTP_ADDRESS, exc)
        return None


async def run(settings: Settings, http_address: str | None = None, tls: ServerTLS | None = None) -> None:
    """Serves the public API until SIGINT/SIGTERM, then drains (gRPC and HTTP
    alike, grpc_server.serve); healthy while history and matching are
    (backend_health.py). With tls, gRPC and HTTP over TLS only. The HTTP API
    then calls the gRPC server on a unix socket in a private folder
    (plaintext, for this process only: its requests passed HTTPS, and the
    client certificate check with mutual TLS, already)."""
    sock = http_socket(http_address)
    local_dir = tempfile.mkdtemp(prefix="cairn-frontend-") if tls is not None else None
    local = f"unix:{local_dir}/grpc.sock" if local_dir is not None else None
    bus = Bus(settings.nats_url, settings.nats_prefix)
    watcher = RunWatcher(bus)
    await bus.subscribe(bus_mod.RUNS, watcher.on_change)
    await bus.subscribe(bus_mod.EVENTS, watcher.on_logged)
    await bus.start()
    history_channel = grpc_server.channel(settings.history_address, settings.internal_credential)
    matching_channel = grpc_server.channel(settings.matching_address, settings.internal_credential)
    backend = Backend(history_channel, settings.history_address, matching_channel, settings.matching_address)
    draining = grpc_server.Draining()  # long polls and streams end at once once it begins
    handlers = Handlers(backend, watcher, settings.sweep_seconds, draining).by_path()
    authenticator = None if settings.insecure_no_auth else Authenticator(backend)
    if authenticator is not None:
        await bus.subscribe(bus_mod.KEYS, authenticator.forget)

    def register(server: grpc.aio.Server) -> None:
        add_services(server, ROUTES, handlers, backend)

    layers = interceptors.chain(ROUTES, authenticator, key_limits(settings))
    if (tracer := otel.tracer("cairn.frontend")) is not None:  # only when exporting spans
        layers.append(TriggerSpans(ROUTES, tracer))
    server, health = grpc_server.make_server(
        settings.listen,
        register,
        SERVICE_NAMES,
        layers,
        credentials=tls.grpc_credentials() if tls is not None else None,
        local=local,
    )
    http = HttpServer(sock, local or settings.listen, tls) if sock is not None else None
    if http is not None:
        await http.start()

    async def on_stop() -> None:
        if http is not None:
            await http.stop()
        await watcher.close()
        await bus.close()
        await history_channel.close()
        await matching_channel.close()
        if local_dir is not None:
            shutil.rmtree(local_dir, ignore_errors=True)

    await grpc_server.serve(
        server,
        health,
        SERVICE_NAMES,
        "frontend",
        settings.listen,
        on_stop,
        grace=settings.shutdown_grace,
        draining=draining,
        also_drain=http.stop if http is not None else None,
        watch_health=lambda set_serving: backend_health.follow(backend, set_serving),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cairn frontend", description="Run the public frontend.")
    add_service_flags(parser, "127.0.0.1:7373")
    tls_mod.add_flags(parser)
    parser.add_argument(
        "--http-address",
        default=os.environ.get("CAIRN_HTTP_ADDRESS") or None,
        help=f"host:port of the HTTP JSON API, its /openapi.json, /docs and /metrics, or "
        f"{HTTP_OFF!r} (CAIRN_HTTP_ADDRESS; default {DEFAULT_HTTP_ADDRESS}, skipped with a "
        "warning when taken)",
    )
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    internal_auth.refuse_start_without_credential(settings, "frontend")
    try:
        tls = tls_mod.from_args(args)
    except ValueError as exc:
        raise SystemExit(f"cairn frontend: {exc}") from None
    logs.setup("frontend")
    with otel.exporting("cairn-frontend"):
        asyncio.run(run(settings, args.http_address, tls))
