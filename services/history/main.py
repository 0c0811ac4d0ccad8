"""The history process: migrations, the gRPC API, the timer loop, retention,
/metrics on --metrics-address."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from services.common import bus as bus_mod
from services.common import db, grpc_server, internal_auth, logs, metrics, otel
from services.common.bus import Bus
from services.common.config import Settings, add_service_flags, settings_from_args
from services.history.api.claim import Claimer
from services.history.liveness import Liveness
from services.history.notify import Announcer
from services.history.retention import Pruner
from services.history.schedules import ScheduleStore
from services.history.servicer import HistoryServicer
from services.history.timer_loop import TimerLoop

log = logging.getLogger("cairn.history")
SECONDS_PER_DAY = 86400.0
SERVICE = hpb.DESCRIPTOR.services_by_name["HistoryService"].full_name


async def run(settings: Settings) -> None:
    """Serves history until SIGINT/SIGTERM."""
    pool = await db.connect_pool(settings.database_url)
    await db.migrate(pool)
    bus = Bus(settings.nats_url, settings.nats_prefix)
    await bus.start()
    schedules = ScheduleStore(pool)
    claimer = Claimer(pool, settings.claim_seconds)
    announcer = Announcer(bus, claimer)
    servicer = HistoryServicer(pool, settings.lease_seconds, schedules, announcer, claimer)
    liveness = Liveness(pool, settings.lease_seconds)
    await liveness.beat()  # after a time no history ran: the leases' grace, before any timer fires
    liveness.start()
    timers = TimerLoop(
        pool,
        settings.lease_seconds,
        schedules,
        announcer.outcome,
        max_sleep=settings.sweep_seconds,
        liveness=liveness,
    )
    announcer.poke_timers.append(timers.poke)
    await bus.subscribe(bus_mod.TIMERS, lambda _msg: timers.poke())
    await bus.subscribe(bus_mod.INTEREST, announcer.interest.on_message)

    def on_work(m: dict[str, Any]) -> None:
        if m.get("keyed"):  # a keyed run was queued (by any replica)
            claimer.keyed_runs_seen(m["namespace"])

    await bus.subscribe(bus_mod.WORK, on_work)
    timers.start()
    pruner: Pruner | None = None
    if settings.retention_days > 0:
        pruner = Pruner(pool, settings.retention_days * SECONDS_PER_DAY, settings.prune_seconds)
        pruner.start()
    else:
        log.info("retention: off (--retention-days 0); finished runs are kept forever")
    server, health = grpc_server.make_server(
        settings.listen,
        lambda s: hgrpc.add_HistoryServiceServicer_to_server(servicer, s),  # type: ignore[no-untyped-call]
        [SERVICE],
        internal_auth.server_interceptors(settings, "history"),
    )

    metrics_server = metrics.MetricsServer(settings.metrics_address) if settings.metrics_address else None

    async def on_stop() -> None:
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.stop)
        await timers.stop()
        await liveness.stop()
        if pruner is not None:
            await pruner.stop()
        await announcer.close()
        await bus.close()
        await pool.close()

    await grpc_server.serve(
        server, health, [SERVICE], "history", settings.listen, on_stop, grace=settings.shutdown_grace
    )


def main(argv: list[str] | None = None) -> None:
    """`cairn history`."""
    parser = argparse.ArgumentParser(prog="cairn history", description="Run the history service.")
    add_service_flags(parser, "127.0.0.1:7375", "history")
    settings = settings_from_args(parser.parse_args(argv))
    internal_auth.refuse_start_without_credential(settings, "history")
    logs.setup("history")
    with otel.exporting("cairn-history"):
        asyncio.run(run(settings))
