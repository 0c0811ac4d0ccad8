"""The frontend process: the public gRPC API (with reflection and health)."""

from __future__ import annotations

import argparse
import asyncio

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc as qgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import schedule_service_pb2_grpc as sgrpc
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import wait_service_pb2_grpc as wsgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from services.common import bus as bus_mod
from services.common import grpc_server, logs
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.frontend.run_watch import RunWatcher
from services.frontend.servicer import (
    Backend,
    QueueServicer,
    RunServicer,
    ScheduleServicer,
    WaitServicer,
    WorkerServicer,
)

SERVICES = [
    rpb.DESCRIPTOR.services_by_name["RunService"].full_name,
    wpb.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    wspb.DESCRIPTOR.services_by_name["WaitService"].full_name,
    spb.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    qpb.DESCRIPTOR.services_by_name["QueueService"].full_name,
]


async def run(settings: Settings) -> None:
    """Serves the public API until SIGINT/SIGTERM."""
    watcher = RunWatcher()
    bus = Bus(settings.nats_url, settings.nats_prefix)
    await bus.subscribe(bus_mod.RUNS, watcher.on_change)
    await bus.start()
    history_channel = grpc_server.channel(settings.history_address)
    matching_channel = grpc_server.channel(settings.matching_address)
    backend = Backend(
        hgrpc.HistoryServiceStub(history_channel),
        settings.history_address,
        mgrpc.MatchingServiceStub(matching_channel),
        settings.matching_address,
    )
    runs = RunServicer(backend, watcher, settings.sweep_seconds)
    workers = WorkerServicer(backend)

    def register(server) -> None:
        rgrpc.add_RunServiceServicer_to_server(runs, server)
        wgrpc.add_WorkerServiceServicer_to_server(workers, server)
        wsgrpc.add_WaitServiceServicer_to_server(WaitServicer(backend), server)
        sgrpc.add_ScheduleServiceServicer_to_server(ScheduleServicer(backend), server)
        qgrpc.add_QueueServiceServicer_to_server(QueueServicer(backend), server)

    server, health = grpc_server.make_server(settings.listen, register, SERVICES)

    async def on_stop() -> None:
        await bus.close()
        await history_channel.close()
        await matching_channel.close()

    await grpc_server.serve(server, health, SERVICES, "frontend", settings.listen, on_stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cairn frontend", description="Run the public frontend.")
    add_service_flags(parser, "127.0.0.1:7373")
    settings = settings_from_args(parser.parse_args(argv))
    logs.setup("frontend")
    asyncio.run(run(settings))
