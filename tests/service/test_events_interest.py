"""History publishes the "events" notice (a step recorded, output appended, metadata
updated) only for runs some frontend announced interest in (bus.INTEREST), by run id or
namespace, and only until that interest's ttl passed; with nobody watching it
publishes nothing (it cost about 0.6 ms of CPU per step, bench/README.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats
import pytest
from harness.waiting import wait_for_async

from services.common import bus as bus_mod
from services.history import notify

TASK = "interest-task"
QUIET = 0.3  # long enough for a notice history published to arrive here
NOTICE_TIMEOUT = 3.0


class InterestProbe:
    """History's Interest as the test sees it: how many INTEREST messages it has
    handled (so a test records its step once history knows, not a fixed time after
    sending), and its clock, which the test moves on to let an interest's ttl pass
    (instead of sleeping it out with a ttl short enough to pass on a slow machine
    before the step that should be watched is recorded)."""

    def __init__(self) -> None:
        self.handled = 0
        self.ahead = 0.0  # seconds the Interest's clock is ahead of time.monotonic

    def clock(self) -> float:
        return time.monotonic() + self.ahead


@pytest.fixture
def interest_probe(monkeypatch: pytest.MonkeyPatch) -> InterestProbe:
    probe = InterestProbe()

    class ObservedInterest(notify.Interest):
        def __init__(self) -> None:
            super().__init__(clock=probe.clock)

        def on_message(self, message: dict[str, Any]) -> None:
            super().on_message(message)
            probe.handled += 1

    monkeypatch.setattr(notify, "Interest", ObservedInterest)  # the one history's Announcer makes
    return probe


@pytest.fixture
def services(interest_probe: InterestProbe, services: Any) -> Any:
    """The tier's services, started once history's Interest is the observed one."""
    return services


class Listener:
    """The services' NATS, seen from the test: events notices received; interest sent."""

    def __init__(self, services: Any, probe: InterestProbe) -> None:
        self.services = services
        self.probe = probe
        self.notices: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def __aenter__(self) -> Listener:
        self.nc = await nats.connect(self.services.nats_url)

        async def on_msg(msg: Any) -> None:
            self.notices.append(json.loads(msg.data))
            self.arrived.set()

        await self.nc.subscribe(f"{self.services.nats_prefix}.{bus_mod.EVENTS}", cb=on_msg)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.drain()

    async def announce(self, run_ids: list[str], namespaces: list[str], ttl: float) -> None:
        message = bus_mod.interest(run_ids, namespaces, ttl)
        handled = self.probe.handled
        await self.nc.publish(f"{self.services.nats_prefix}.{bus_mod.INTEREST}", json.dumps(message).encode())
        await self.nc.flush()

        async def history_handled_it() -> bool:  # on its own connection
            return self.probe.handled > handled

        await wait_for_async(history_handled_it, NOTICE_TIMEOUT, message="history handled the interest")

    async def quiet(self) -> list[dict[str, Any]]:
        """The notices that arrived within QUIET seconds, then forgotten."""
        await asyncio.sleep(QUIET)
        seen, self.notices = self.notices, []
        self.arrived.clear()
        return seen

    async def next_notice(self) -> dict[str, Any]:
        await asyncio.wait_for(self.arrived.wait(), NOTICE_TIMEOUT)
        await asyncio.sleep(0.05)  # a duplicate would be here by now
        seen, self.notices = self.notices, []
        self.arrived.clear()
        assert len(seen) == 1, seen
        return seen[0]


async def test_events_notices_only_for_announced_runs_until_the_interest_expires(services, interest_probe):
    await services.register(TASK)
    a = await services.start(TASK)
    async with Listener(services, interest_probe) as listener:
        await services.record_step(a.run_id, 1, 0, "unwatched")
        assert await listener.quiet() == []

        await listener.announce([a.run_id], [], ttl=5)
        await services.record_step(a.run_id, 1, 1, "watched")
        assert await listener.next_notice() == {"namespace": services.namespace, "run_id": a.run_id}

        await listener.announce(["00000000-0000-0000-0000-000000000000"], ["another-namespace"], ttl=30)
        interest_probe.ahead += 5  # the run's interest expired; the other ones do not match
        await services.record_step(a.run_id, 1, 2, "no longer watched")
        assert await listener.quiet() == []


async def test_a_namespace_interest_covers_its_runs(services, interest_probe):
    await services.register(TASK)
    a = await services.start(TASK)
    async with Listener(services, interest_probe) as listener:
        await listener.announce([], [services.namespace], ttl=5)
        await services.record_step(a.run_id, 1, 0, "watched")
        assert await listener.next_notice() == {"namespace": services.namespace, "run_id": a.run_id}
