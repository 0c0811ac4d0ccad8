"""The frontend's RunWatcher announces the runs and namespaces it follows (bus.INTEREST):
once at the first follower, before follow returns (and flushed), again every refresh
interval while followed, never for one no longer followed; a new follower is woken
once more INTEREST_SETTLE_SECONDS after the first announcement."""

from __future__ import annotations

import asyncio
from typing import Any

from harness.waiting import wait_for_async

from services.common import bus as bus_mod
from services.frontend.run_watch import RunWatcher

REFRESH = 0.05


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.flushes = 0

    async def publish(self, kind: str, message: dict[str, Any]) -> None:
        self.sent.append((kind, message))

    async def flush(self, timeout: int = 1) -> None:
        self.flushes += 1

    def take(self) -> list[dict[str, Any]]:
        assert all(kind == bus_mod.INTEREST for kind, _ in self.sent)
        messages = [m for _, m in self.sent]
        self.sent.clear()
        return messages


def test_first_follower_announces_and_flushes_then_refreshes_until_unfollowed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        bus = FakeBus()
        watcher = RunWatcher(bus, refresh=REFRESH)  # type: ignore[arg-type]
        started = loop.time()
        one = await watcher.follow("run-1")
        assert bus.take() == [{"run_ids": ["run-1"], "namespaces": [], "ttl": 3 * REFRESH}]
        assert bus.flushes == 1
        two = await watcher.follow("run-1")  # already announced
        ns = await watcher.follow_namespace("default")
        assert bus.take() == [{"run_ids": [], "namespaces": ["default"], "ttl": 3 * REFRESH}]

        # Waiting for the refreshes rather than sleeping a number of intervals: a
        # slow machine may see more than one per wait, never more than one per interval.
        refreshes = 0

        async def refreshed() -> list[dict[str, Any]]:
            return bus.take()

        async def next_refreshes(expected: dict[str, Any]) -> None:
            nonlocal refreshes
            messages = await wait_for_async(refreshed, 10, message=f"a refresh announcing {expected}")
            assert all(m == expected for m in messages), messages
            refreshes += len(messages)
            assert refreshes <= (loop.time() - started) / REFRESH, "refreshed more often than the interval"

        await next_refreshes({"run_ids": ["run-1"], "namespaces": ["default"], "ttl": 3 * REFRESH})

        watcher.unfollow("run-1", one)
        watcher.unfollow("run-1", two)
        await next_refreshes({"run_ids": [], "namespaces": ["default"], "ttl": 3 * REFRESH})

        watcher.unfollow_namespace("default", ns)

        async def refresher_stopped() -> bool:
            return watcher._refresher is None

        await wait_for_async(refresher_stopped, 10, message="the refresher stopped with nothing followed")
        assert bus.take() == []  # its last wake-up announced nothing

        await watcher.follow("run-1")  # followed again: announced again at once
        assert [m["run_ids"] for m in bus.take()] == [["run-1"]]
        await watcher.close()

    asyncio.run(scenario())


def test_a_new_follower_is_woken_once_after_the_interest_settled() -> None:
    async def scenario() -> None:
        watcher = RunWatcher(FakeBus())  # type: ignore[arg-type]
        event = await watcher.follow("run-1")
        assert not event.is_set()
        await asyncio.sleep(bus_mod.INTEREST_SETTLE_SECONDS + 0.05)
        assert event.is_set()
        await watcher.close()

    asyncio.run(scenario())


def test_without_a_bus_nothing_is_announced_and_events_still_wake() -> None:
    async def scenario() -> None:
        watcher = RunWatcher()
        event = await watcher.follow("run-1")
        watcher.on_logged({"namespace": "default", "run_id": "run-1"})
        assert event.is_set()

    asyncio.run(scenario())


def test_refreshes_are_batched() -> None:
    async def scenario() -> None:
        bus = FakeBus()
        watcher = RunWatcher(bus)  # type: ignore[arg-type]
        for i in range(bus_mod.INTEREST_BATCH + 1):
            watcher._followers[f"run-{i}"].add(asyncio.Event())
        await watcher.announce_all()
        sizes = [len(m["run_ids"]) for m in bus.take()]
        assert sizes == [bus_mod.INTEREST_BATCH, 1]

    asyncio.run(scenario())
