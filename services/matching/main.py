"""The matching process: worker registry, claims, long-polls, sweep."""

from __future__ import annotations

import argparse
import asyncio

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2 as mpb
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from services.common import bus as bus_mod
from services.common import db, grpc_server, logs
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.matching.dispatch import Claimer, Sweeper, Waiters
from services.matching.queues import QueueStore
from services.matching.registry import Registry
from services.matching.servicer import MatchingServicer

SERVICE = mpb.DESCRIPTOR.services_by_name["MatchingService"].full_name


async def run(settings: Settings) -> None:
    """Serves matching until SIGINT/SIGTERM."""
    pool = await db.connect_pool(settings.database_url, max_size=30)
    await db.migrate(pool)
    waiters = Waiters()
    claimer = Claimer(pool, settings.claim_seconds)
    bus = Bus(settings.nats_url, settings.nats_prefix)

    def on_work(m: dict) -> None:
        if m.get("keyed"):
            claimer.keyed_runs_seen(m["namespace"])
        waiters.wake((m["namespace"], m["task_id"]))

    await bus.subscribe(bus_mod.WORK, on_work)

    def on_run_change(m: dict) -> None:
        # An attempt that ended may have freed a concurrency slot of its queue.
        if (
            m.get("status") not in ("queued", "executing", "delayed")
            and (m["namespace"], m.get("queue", "")) in claimer.limited_queues
        ):
            waiters.wake((m["namespace"], m.get("task_id", "")))

    await bus.subscribe(bus_mod.RUNS, on_run_change)
    await bus.start()
    await claimer.refresh_limited_queues()
    sweeper = Sweeper(claimer, waiters, settings.sweep_seconds)
    sweeper.start()
    history_channel = grpc_server.channel(settings.history_address)
    servicer = MatchingServicer(
        Registry(pool),
        claimer,
        waiters,
        hgrpc.HistoryServiceStub(history_channel),
        settings.history_address,
        QueueStore(pool),
        bus,
    )
    server, health = grpc_server.make_server(
        settings.listen, lambda s: mgrpc.add_MatchingServiceServicer_to_server(servicer, s), [SERVICE]
    )

    async def on_stop() -> None:
        await sweeper.stop()
        await bus.close()
        await history_channel.close()
        await pool.close()

    await grpc_server.serve(server, health, [SERVICE], "matching", settings.listen, on_stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cairn matching", description="Run the matching service.")
    add_service_flags(parser, "127.0.0.1:7376")
    settings = settings_from_args(parser.parse_args(argv))
    logs.setup("matching")
    asyncio.run(run(settings))
