"""The matching process: worker registry, queue settings, long-polls, sweep,
and /metrics (with every queue's depth and executing runs) on --metrics-address."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from prometheus_client import REGISTRY

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2 as mpb
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from services.common import bus as bus_mod
from services.common import db, grpc_server, internal_auth, logs, metrics, otel
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.matching import queue_metrics
from services.matching.keys import KeyStore
from services.matching.limited import LimitedQueues
from services.matching.queues import QueueStore
from services.matching.registry import Registry
from services.matching.servicer import MatchingServicer
from services.matching.sweep import Sweeper
from services.matching.waiters import Waiters

log = logging.getLogger("cairn.matching")
SERVICE = mpb.DESCRIPTOR.services_by_name["MatchingService"].full_name


async def run(settings: Settings) -> None:
    """Serves matching until SIGINT/SIGTERM, then shuts down gracefully
    (grpc_server.serve): polls waiting for work answer at once, empty."""
    pool = await db.connect_pool(settings.database_url, max_size=30)
    await db.migrate(pool)
    waiters = Waiters()
    limited = LimitedQueues(pool)
    bus = Bus(settings.nats_url, settings.nats_prefix)

    def on_work(m: dict[str, Any]) -> None:
        waiters.wake((m["namespace"], m["task_id"]))

    await bus.subscribe(bus_mod.WORK, on_work)

    def on_run_change(m: dict[str, Any]) -> None:
        # An attempt that ended may have freed a concurrency slot of its queue.
        if (
            m.get("status") not in ("queued", "executing", "delayed")
            and (m["namespace"], m.get("queue", "")) in limited
        ):
            waiters.wake((m["namespace"], m.get("task_id", "")))

    await bus.subscribe(bus_mod.RUNS, on_run_change)
    await bus.start()
    await limited.refresh()
    sweeper = Sweeper(pool, limited, waiters, settings.sweep_seconds)
    sweeper.start()
    key_store = KeyStore(pool)
    if settings.admin_key and await key_store.ensure_admin(settings.admin_key):
        log.info("stored the bootstrap admin key (--admin-key) for every namespace")
    history_channel = grpc_server.channel(settings.history_address, settings.internal_credential)
    servicer = MatchingServicer(
        Registry(pool),
        limited,
        waiters,
        hgrpc.HistoryServiceStub(history_channel),  # type: ignore[no-untyped-call]
        settings.history_address,
        QueueStore(pool),
        bus,
        key_store,
    )
    server, health = grpc_server.make_server(
        settings.listen,
        lambda s: mgrpc.add_MatchingServiceServicer_to_server(servicer, s),  # type: ignore[no-untyped-call]
        [SERVICE],
        internal_auth.server_interceptors(settings, "matching"),
    )

    metrics_server: metrics.MetricsServer | None = None
    queue_collector: metrics.LoopCollector | None = None
    if settings.metrics_address:
        queue_collector = queue_metrics.collector(pool, asyncio.get_running_loop())
        REGISTRY.register(queue_collector)
        metrics_server = metrics.MetricsServer(settings.metrics_address)

    async def on_stop() -> None:
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.stop)
        if queue_collector is not None:
            REGISTRY.unregister(queue_collector)
        await sweeper.stop()
        await bus.close()
        await history_channel.close()
        await pool.close()

    draining = grpc_server.Draining()  # long polls answer at once once it begins
    with draining.hook(waiters.drain):
        await grpc_server.serve(
            server,
            health,
            [SERVICE],
            "matching",
            settings.listen,
            on_stop,
            grace=settings.shutdown_grace,
            draining=draining,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cairn matching", description="Run the matching service.")
    add_service_flags(parser, "127.0.0.1:7376", "matching")
    settings = settings_from_args(parser.parse_args(argv))
    internal_auth.refuse_start_without_credential(settings, "matching")
    logs.setup("matching")
    with otel.exporting("cairn-matching"):
        asyncio.run(run(settings))
