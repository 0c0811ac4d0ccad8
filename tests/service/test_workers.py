"""MatchingService.ListWorkers: the namespace's workers with what they serve,
connected when seen within WORKER_CONNECTED_SECONDS or executing an attempt
(a busy worker does not poll); a poll marks its worker
seen at most once per WORKER_SEEN_REFRESH (when matching re-reads its row), not
once per poll."""

from __future__ import annotations

import asyncio

import asyncpg

from cairn.limits import WORKER_CONNECTED_SECONDS, WORKER_FORGOTTEN_SECONDS, WORKER_SEEN_REFRESH
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import worker_service_pb2 as wpb
from services.matching import servicer as matching_servicer
from services.matching import sweep

TASK = "workers-task"


async def list_workers(services) -> list[qpb.WorkerInfo]:
    response = await services.matching.ListWorkers(qpb.ListWorkersRequest(namespace=services.namespace))
    return list(response.workers)


async def last_seen(services, worker_id: str = "worker-1"):
    conn = await asyncpg.connect(services.database_url)
    try:
        return await conn.fetchval("SELECT last_seen_at FROM workers WHERE worker_id = $1", worker_id)
    finally:
        await conn.close()


async def age_workers(services, seconds: float, like: str = "%") -> None:
    """Makes the workers whose id matches `like` last seen `seconds` ago."""
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(
            "UPDATE workers SET last_seen_at = now() - make_interval(secs => $1) WHERE worker_id LIKE $2",
            seconds,
            like,
        )
    finally:
        await conn.close()


async def test_a_registered_worker_is_listed_connected_with_its_tasks(services):
    assert await list_workers(services) == []
    await services.register(TASK, "other-task", worker_id="w-a", version="1.2", slots=8)
    (w,) = await list_workers(services)
    assert (w.worker_id, w.version, list(w.task_ids), w.slots) == ("w-a", "1.2", [TASK, "other-task"], 8)
    assert w.connected
    assert w.registered_at.ToDatetime() <= w.last_seen_at.ToDatetime()


async def test_a_worker_not_seen_within_the_window_is_listed_not_connected(services):
    await services.register(TASK, worker_id="gone")
    await services.register(TASK, worker_id="here")
    await age_workers(services, WORKER_CONNECTED_SECONDS + 1, "gone")  # just over the window ago
    listed = await list_workers(services)
    assert [(w.worker_id, w.connected) for w in listed] == [("here", True), ("gone", False)]


async def test_a_busy_worker_not_seen_within_the_window_is_still_connected(services):
    """All its slots busy, a worker does not poll; its executing attempts (their
    leases kept by its heartbeats) show it is there."""
    await services.register(TASK, worker_id="busy")
    await services.register(TASK, worker_id="idle")
    await services.trigger(TASK)
    (handed,) = await services.claim(TASK, worker_id="busy")
    await age_workers(services, WORKER_CONNECTED_SECONDS + 1)
    listed = {w.worker_id: (w.connected, w.running) for w in await list_workers(services)}
    assert listed == {"busy": (True, 1), "idle": (False, 0)}
    await services.finish(handed.run_id, handed.attempt, wpb.ATTEMPT_OUTCOME_COMPLETED, "done")
    listed = {w.worker_id: (w.connected, w.running) for w in await list_workers(services)}
    assert listed == {"busy": (False, 0), "idle": (False, 0)}


async def test_registrations_gone_for_the_expiry_are_forgotten_unless_executing(services):
    await services.register(TASK, worker_id="old")
    await services.register(TASK, worker_id="old-busy")
    await services.register(TASK, worker_id="recent")
    await services.trigger(TASK)
    await services.claim(TASK, worker_id="old-busy")
    await age_workers(services, WORKER_FORGOTTEN_SECONDS + 1, "old%")
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=1)
    try:
        assert await sweep.forget_workers(pool) == [(services.namespace, "old")]
        assert sorted(w.worker_id for w in await list_workers(services)) == ["old-busy", "recent"]
        assert await sweep.forget_workers(pool) == []
    finally:
        await pool.close()


async def test_polls_mark_the_worker_seen_once_per_refresh_not_once_per_poll(services):
    await services.register(TASK)
    registered = await last_seen(services)
    await services.poll(TASK)  # the first poll after a registration reads (and touches) the row
    first = await last_seen(services)
    assert first > registered
    for _ in range(20):
        await services.poll(TASK)
    assert await last_seen(services) == first  # within WORKER_SEEN_REFRESH: no write
    assert WORKER_SEEN_REFRESH <= WORKER_CONNECTED_SECONDS / 3


async def test_after_the_refresh_interval_a_poll_moves_last_seen_again(services, monkeypatch):
    cache = 0.3
    monkeypatch.setattr(matching_servicer, "WORKER_CACHE_SECONDS", cache)
    loop = asyncio.get_running_loop()
    start = loop.time()  # before the registration: no read of the row is older
    await services.register(TASK)
    seen = set()
    polls = 0
    # Polls for a second and until last_seen moved again (within 5 s), however slow
    # the machine: a fixed count of writes in a fixed second breaks when it pauses.
    while loop.time() - start < 1.0 or len(seen) < 2:
        assert loop.time() - start < 5.0, f"last_seen did not move again in {polls} polls: {seen}"
        await services.poll(TASK)
        polls += 1
        seen.add(await last_seen(services))
        await asyncio.sleep(0.02)
    took = loop.time() - start
    # one write per refresh interval at most (about 1.0 / 0.3 of them), never one per poll
    # (about 40 polls)
    assert len(seen) <= 1 + took / cache, (len(seen), polls, took)
