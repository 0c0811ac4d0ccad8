"""The frontend process: the public gRPC API (with reflection and health)."""

from __future__ import annotations

import argparse
import asyncio

import grpc

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from services.common import bus as bus_mod
from services.common import grpc_server, logs
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.frontend import interceptors
from services.frontend.backend import Backend
from services.frontend.handlers import Handlers
from services.frontend.routes import ROUTES, SERVICES
from services.frontend.run_watch import RunWatcher
from services.frontend.serving import add_services

SERVICE_NAMES = [s.full_name for s in SERVICES]


async def run(settings: Settings) -> None:
    """Serves the public API until SIGINT/SIGTERM."""
    watcher = RunWatcher()
    bus = Bus(settings.nats_url, settings.nats_prefix)
    await bus.subscribe(bus_mod.RUNS, watcher.on_change)
    await bus.start()
    history_channel = grpc_server.channel(settings.history_address)
    matching_channel = grpc_server.channel(settings.matching_address)
    backend = Backend(
        hgrpc.HistoryServiceStub(history_channel),  # type: ignore[no-untyped-call]
        settings.history_address,
        mgrpc.MatchingServiceStub(matching_channel),  # type: ignore[no-untyped-call]
        settings.matching_address,
    )
    handlers = Handlers(backend, watcher, settings.sweep_seconds).by_path()

    def register(server: grpc.aio.Server) -> None:
        add_services(server, ROUTES, handlers, backend)

    server, health = grpc_server.make_server(
        settings.listen, register, SERVICE_NAMES, interceptors.chain(ROUTES)
    )

    async def on_stop() -> None:
        await bus.close()
        await history_channel.close()
        await matching_channel.close()

    await grpc_server.serve(server, health, SERVICE_NAMES, "frontend", settings.listen, on_stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cairn frontend", description="Run the public frontend.")
    add_service_flags(parser, "127.0.0.1:7373")
    settings = settings_from_args(parser.parse_args(argv))
    logs.setup("frontend")
    asyncio.run(run(settings))
