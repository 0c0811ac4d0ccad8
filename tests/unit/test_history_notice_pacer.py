"""History paces a watched run's "events" notices (notify.NoticePacer): the first
event after a quiet spell is announced at once, the rest of a burst by one notice
EVENTS_NOTICE_INTERVAL after the one before, so a run recording steps back to
back costs its watchers a notice per interval, not one per step, and the last
event of a burst is always announced."""

from __future__ import annotations

import asyncio

from services.history.notify import NoticePacer

INTERVAL = 0.05
TIMEOUT = 5.0


class Published:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []
        self.changed = asyncio.Event()

    async def publish(self, namespace: str, run_id: str) -> None:
        self.sent.append((namespace, run_id, asyncio.get_running_loop().time()))
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()


def test_a_burst_is_announced_at_once_and_once_more_after_the_interval() -> None:
    async def main() -> None:
        p = Published()
        pacer = NoticePacer(p.publish, INTERVAL)
        for _ in range(5):
            await pacer.notice("ns", "run-1")
        assert [s[:2] for s in p.sent] == [("ns", "run-1")]  # the first at once
        await p.until(2)  # the other four: one notice, an interval after the first
        assert p.sent[1][2] - p.sent[0][2] >= INTERVAL - 0.005
        await pacer.notice("ns", "run-2")  # another run is not held back by run-1's pace
        assert [s[1] for s in p.sent] == ["run-1", "run-1", "run-2"]
        await pacer.notice("ns", "run-1")  # within an interval of the trailing notice: scheduled
        await p.until(4)
        assert p.sent[3][:2] == ("ns", "run-1") and p.sent[3][2] - p.sent[1][2] >= INTERVAL - 0.005
        assert not pacer._due

    asyncio.run(main())


def test_an_event_after_a_quiet_spell_is_announced_at_once_and_old_runs_are_forgotten() -> None:
    async def main() -> None:
        p = Published()
        pacer = NoticePacer(p.publish, 0.0)  # every notice is after a quiet spell
        for run in ("a", "b", "c"):
            await pacer.notice("ns", run)
            await pacer.notice("ns", run)
        assert [s[1] for s in p.sent] == ["a", "a", "b", "b", "c", "c"]
        assert not pacer._due and len(pacer._last) <= 1  # the others purged

    asyncio.run(main())


def test_closing_sends_the_scheduled_notices_at_once() -> None:
    async def main() -> None:
        p = Published()
        pacer = NoticePacer(p.publish, 60.0)  # the trailing notice would wait a minute
        await pacer.notice("ns", "run-1")
        await pacer.notice("ns", "run-1")
        assert len(p.sent) == 1 and pacer._due
        await pacer.close()
        assert [s[:2] for s in p.sent] == [("ns", "run-1")] * 2 and not pacer._due

    asyncio.run(main())
