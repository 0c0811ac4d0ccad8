"""Announcing committed transitions on NATS: work for matching's pollers, run
changes for waiters, timers for every history replica's timer loop; and
counting them (runs created, attempts started, runs ended: services/common/metrics.py),
here because every committed transition passes once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common import bus as bus_mod
from services.common import metrics
from services.common.bus import Bus
from services.history.api.claim import Claimer
from services.history.api.transition import Effects, Outcome, Row


class Announcer:
    """Publishes what committed transitions changed."""

    def __init__(self, bus: Bus, claimer: Claimer) -> None:
        self.bus = bus
        self.claimer = claimer
        self.poke_timers: list[Callable[[], None]] = []  # the local timer loop's poke

    async def effects(self, effects: Effects, run: Row | None = None) -> None:
        """Publishes the effects of one transition (of `run`, when it has one)."""
        for namespace, task, queue in effects.created:
            metrics.run_created(namespace, task, queue)
        if run is not None and effects.run_changed:
            metrics.run_changed(run)
        work = set(effects.work_keys)
        if run is not None and effects.work_ready:
            work.add((run["namespace"], run["task_id"]))
        keyed = run is not None and bool(run["concurrency_key"])
        if run is not None and keyed and work:  # this replica's claims look for keys again at once
            self.claimer.keyed_runs_seen(run["namespace"])
        for ns, task_id in work:
            notice: dict[str, Any] = {"namespace": ns, "task_id": task_id}
            if keyed:  # claims serve keyed queues round-robin; tell every replica this one is
                notice["keyed"] = True
            await self.bus.publish(bus_mod.WORK, notice)
        if run is not None and effects.run_changed:
            await self.bus.publish(
                bus_mod.RUNS,
                {
                    "namespace": run["namespace"],
                    "run_id": str(run["id"]),
                    "task_id": run["task_id"],
                    "queue": run["queue"],
                    "status": run["status"],
                },
            )
        if effects.timer_due is not None:
            for poke in self.poke_timers:
                poke()
            await self.bus.publish(bus_mod.TIMERS, {"due_at": effects.timer_due.isoformat()})

    async def logged(self, namespace: str, run_id: str) -> None:
        """A run's event was logged without a change of status (a step record,
        a metadata update): wakes its watchers (the frontend's WatchRun)."""
        await self.bus.publish(bus_mod.EVENTS, {"namespace": namespace, "run_id": run_id})

    async def outcome(self, outcome: Outcome) -> None:
        """Publishes a transition's effects."""
        await self.effects(outcome.effects, outcome.run)
