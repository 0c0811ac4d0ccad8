"""Queue concurrency limits with several replicas, real processes, real PostgreSQL
and NATS (DESIGN.md, "Invariants the tests must prove", 2): with two matching
replicas and several workers, a queue's concurrency_limit (and per concurrency
key) is never exceeded, is actually reached, follows UpdateQueue at run time,
and holds when a matching replica is SIGKILLed under load.

Concurrency is measured two ways, and both must stay <= the limit and reach it:

- from the task bodies: each body (tests/apps/limit_tasks.py) appends "start" and
  "end" lines with time.time() to LIMIT_TASKS_DIR/bodies.log; the maximum number
  of overlapping [start, end] intervals (per key where relevant) is computed here.
  A body runs strictly inside its attempt's `executing` window, so this can only
  under-count, never over-count, what the database allowed;
- from the database: a sampler thread polls
  ``SELECT concurrency_key, count(*) FROM runs WHERE queue = $1 AND status = 'executing'``
  every 20 ms on its own connection (one statement = one snapshot) while the load
  runs, and keeps every sample.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from harness import Cluster, WorkerProcess, wait_for, wait_registered

from worker_sdk import Client, Queue

APP = "tests.apps.limit_tasks"
BAD_STATUSES = ("failed", "canceled", "crashed", "timed_out", "expired")


# ---- helpers -----------------------------------------------------------------------


@pytest.fixture
def body_dir(tmp_path: Path) -> Path:
    d = tmp_path / "limit-tasks"
    d.mkdir()
    return d


def body_env(d: Path) -> dict[str, str]:
    return {"LIMIT_TASKS_DIR": str(d)}


def two_matching_replicas(c: Cluster) -> tuple[Any, Any]:
    """matching-2 and frontend-2 wired to it (frontend stays on matching)."""
    m2 = c.add_replica("matching")
    f2 = c.add_replica("frontend", matching=m2.name)
    return m2, f2


def status_counts(c: Cluster, task_id: str) -> dict[str, int]:
    rows = c.sql("SELECT status, count(*) AS n FROM runs WHERE task_id = $1 GROUP BY status", task_id)
    return {r["status"]: r["n"] for r in rows}


def wait_all_completed(c: Cluster, task_id: str, n: int, timeout: float) -> float:
    """Waits until all n runs of task_id are completed; returns when (monotonic)."""

    def done() -> bool:
        counts = status_counts(c, task_id)
        bad = {s: k for s, k in counts.items() if s in BAD_STATUSES}
        if bad:
            raise AssertionError(f"runs of {task_id} ended badly: {counts}")
        return counts.get("completed", 0) == n

    wait_for(done, timeout, interval=0.1, message=f"not all {n} runs of {task_id} completed")
    return time.monotonic()


@dataclass
class Body:
    run_id: str
    attempt: int
    key: str
    pid: int
    start: float
    end: float | None = None


def read_bodies(d: Path) -> tuple[list[Body], Counter[str], Counter[str]]:
    """The body intervals, and the number of start and end lines per run."""
    path = d / "bodies.log"
    lines = path.read_text().splitlines() if path.exists() else []
    bodies: dict[tuple[str, int], Body] = {}
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for line in lines:
        event, run_id, attempt, key, at, pid = line.split()
        ident = (run_id, int(attempt))
        if event == "start":
            starts[run_id] += 1
            bodies[ident] = Body(run_id, int(attempt), key, int(pid), float(at))
        else:
            ends[run_id] += 1
            bodies[ident].end = float(at)
    return list(bodies.values()), starts, ends


def max_overlap(bodies: Iterable[Body], before: float | None = None) -> int:
    """The most intervals open at once (an end at the same instant as a start
    counts first). With `before`, only moments earlier than it count."""
    events = []
    for b in bodies:
        events.append((b.start, 1))
        events.append((b.end if b.end is not None else float("inf"), -1))
    events.sort(key=lambda e: (e[0], e[1]))
    best = open_ = 0
    for at, delta in events:
        open_ += delta
        if before is not None and at >= before:
            break
        best = max(best, open_)
    return best


def max_overlap_per_key(bodies: Iterable[Body]) -> dict[str, int]:
    by_key: dict[str, list[Body]] = defaultdict(list)
    for b in bodies:
        by_key[b.key].append(b)
    return {k: max_overlap(v) for k, v in by_key.items()}


@dataclass
class Sample:
    at: float  # time.time() when the query had returned
    counts: dict[str, int]  # concurrency_key -> executing runs

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class ExecutingSampler:
    """Polls the executing runs of a queue (by concurrency key) from a thread."""

    database_url: str
    queue: str
    interval: float = 0.02
    samples: list[Sample] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"sampler-{self.queue}", daemon=True)

    def __enter__(self) -> ExecutingSampler:
        self._thread.start()
        if not self._ready.wait(15):
            raise AssertionError(f"sampler did not connect: {self.error!r}")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        if self.error is not None:
            raise AssertionError(f"the sampler failed: {self.error!r}") from self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._ready.set()

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            stmt = await conn.prepare(
                "SELECT concurrency_key, count(*) AS n FROM runs "
                "WHERE queue = $1 AND status = 'executing' GROUP BY concurrency_key"
            )
            self._ready.set()
            while not self._stop.is_set():
                rows = await stmt.fetch(self.queue)
                self.samples.append(Sample(time.time(), {r["concurrency_key"]: r["n"] for r in rows}))
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()

    # what the samples show
    def max_total(self, before: float | None = None, after: float | None = None) -> int:
        return max(
            (
                s.total
                for s in self.samples
                if (before is None or s.at < before) and (after is None or s.at > after)
            ),
            default=0,
        )

    def max_per_key(self) -> dict[str, int]:
        best: dict[str, int] = defaultdict(int)
        for s in self.samples:
            for k, n in s.counts.items():
                best[k] = max(best[k], n)
        return dict(best)

    def first_at_least(self, n: int, after: float) -> Sample | None:
        return next((s for s in self.samples if s.at > after and s.total >= n), None)


def check_attempts_exactly_once(c: Cluster, task_id: str, n: int) -> dict[str, int]:
    """Every run completed with exactly one completed attempt; returns
    {attempt status: count} over all attempts of the task's runs."""
    rows = c.sql(
        "SELECT r.id::text AS id, count(a.*) AS total, "
        "count(a.*) FILTER (WHERE a.status = 'completed') AS completed "
        "FROM runs r LEFT JOIN attempts a ON a.run_id = r.id WHERE r.task_id = $1 GROUP BY r.id",
        task_id,
    )
    assert len(rows) == n, f"{len(rows)} runs of {task_id}, expected {n}"
    twice = [(r["id"], r["completed"]) for r in rows if r["completed"] != 1]
    assert not twice, f"runs without exactly one completed attempt: {twice[:10]}"
    return {
        r["status"]: r["n"]
        for r in c.sql(
            "SELECT a.status, count(*) AS n FROM attempts a JOIN runs r ON r.id = a.run_id "
            "WHERE r.task_id = $1 GROUP BY a.status",
            task_id,
        )
    }


def check_bodies_once(run_ids: list[str], starts: Counter[str], ends: Counter[str]) -> None:
    missing = [r for r in run_ids if ends[r] == 0]
    assert not missing, f"{len(missing)} runs never finished a body: {missing[:5]}"
    twice = {r: (starts[r], ends[r]) for r in run_ids if starts[r] != 1 or ends[r] != 1}
    assert not twice, f"bodies started/ended more than once: {dict(list(twice.items())[:10])}"
    extra = set(starts) - set(run_ids)
    assert not extra, f"bodies of unknown runs: {sorted(extra)[:5]}"


def queue_info(client: Client, name: str) -> Queue:
    return next(q for q in client.list_queues() if q.name == name)


def start_spread_workers(c: Cluster, f2: Any, d: Path, lists_for_all: bool = False) -> list[WorkerProcess]:
    """Three workers x 4 slots: one on frontend (-> matching), one on frontend-2
    (-> matching-2), one round-robin over both; with lists_for_all, the second
    gets the list too (so it can fail over when matching-2 dies)."""
    both = f"{f2.address},{c.address}"
    addresses = [c.address, both if lists_for_all else f2.address, both]
    workers = [c.start_worker(APP, slots=4, env=body_env(d), address=a) for a in addresses]
    for w in workers:
        wait_registered(c, worker=w, timeout=30)
    return workers


# ---- 1. two matching replicas, limit 5, 500 runs ------------------------------------


def test_limit_holds_and_is_reached_with_two_matching_replicas(cluster: Cluster, body_dir: Path) -> None:
    limit, n = 5, 500
    _, f2 = two_matching_replicas(cluster)
    workers = start_spread_workers(cluster, f2, body_dir)
    with Client(cluster.address) as client:
        assert queue_info(client, "limit-five").concurrency_limit == limit
        with ExecutingSampler(cluster.database_url, "limit-five") as sampler:
            t0 = time.monotonic()
            runs = client.batch_trigger(
                [{"task": "limit-five", "payload": {"i": i, "ms": 60}} for i in range(n)]
            )
            done = wait_all_completed(cluster, "limit-five", n, 90)
    run_ids = [r.id for r in runs]
    assert len(set(run_ids)) == n

    attempt_statuses = check_attempts_exactly_once(cluster, "limit-five", n)
    assert attempt_statuses == {"completed": n}, attempt_statuses  # nothing died
    bodies, starts, ends = read_bodies(body_dir)
    check_bodies_once(run_ids, starts, ends)
    for w in workers:
        assert w.running, f"{w.name} died:\n{w.log_tail(40)}"
    # Both matching replicas dispatched: worker-2 reaches only frontend-2 -> matching-2.
    per_pid = Counter(b.pid for b in bodies)
    for w in workers:
        assert per_pid[w.pid] > 0, f"{w.name} ran nothing: {dict(per_pid)}"

    db_max = sampler.max_total()
    body_max = max_overlap(bodies)
    span = max(b.end for b in bodies if b.end) - min(b.start for b in bodies)
    print(
        f"\n[limit-five] {n} runs, limit {limit}, 2 matching replicas, 3x4 slots: "
        f"{n / (done - t0):.1f} runs/s end to end ({done - t0:.2f} s), "
        f"{n / span:.1f} runs/s between first body start and last body end; "
        f"max executing: DB {db_max} ({len(sampler.samples)} samples), bodies {body_max}; "
        f"runs per worker {sorted(per_pid.values())}"
    )
    assert db_max <= limit, f"DB showed {db_max} executing with limit {limit}"
    assert body_max <= limit, f"{body_max} bodies overlapped with limit {limit}"
    assert db_max == limit, f"the limit was never reached in the DB (max {db_max})"
    assert body_max == limit, f"the limit was never reached by bodies (max {body_max})"


# ---- 2. per concurrency key ---------------------------------------------------------


def test_limit_per_concurrency_key(cluster: Cluster, body_dir: Path) -> None:
    limit, n_keys, per_key = 2, 20, 10
    workers = [cluster.start_worker(APP, slots=4, env=body_env(body_dir)) for _ in range(3)]
    for w in workers:
        wait_registered(cluster, worker=w, timeout=30)
    keys = [f"tenant-{k:02d}" for k in range(n_keys)]
    items = [
        {"task": "limit-keyed", "payload": {"i": i, "key": key, "ms": 60}, "concurrency_key": key}
        for key in keys
        for i in range(per_key)
    ]  # key-major: fairness is matching's job
    with Client(cluster.address) as client:
        assert queue_info(client, "limit-keyed").concurrency_limit == limit
        with ExecutingSampler(cluster.database_url, "limit-keyed") as sampler:
            t0 = time.monotonic()
            runs = client.batch_trigger(items)
            done = wait_all_completed(cluster, "limit-keyed", len(items), 90)
    run_ids = [r.id for r in runs]
    key_of = {r.id: item["concurrency_key"] for r, item in zip(runs, items)}
    db_keys = {
        r["id"]: r["concurrency_key"]
        for r in cluster.sql("SELECT id::text AS id, concurrency_key FROM runs WHERE task_id = 'limit-keyed'")
    }
    assert db_keys == key_of, "runs do not carry the concurrency keys they were triggered with"

    attempt_statuses = check_attempts_exactly_once(cluster, "limit-keyed", len(items))
    assert attempt_statuses == {"completed": len(items)}, attempt_statuses
    bodies, starts, ends = read_bodies(body_dir)
    check_bodies_once(run_ids, starts, ends)
    assert all(b.key == key_of[b.run_id] for b in bodies)

    db_per_key = sampler.max_per_key()
    body_per_key = max_overlap_per_key(bodies)
    db_total = sampler.max_total()
    body_total = max_overlap(bodies)
    print(
        f"\n[limit-keyed] {len(items)} runs, {n_keys} keys, limit {limit} per key, 3x4 slots: "
        f"{len(items) / (done - t0):.1f} runs/s ({done - t0:.2f} s); max executing per key: "
        f"DB {max(db_per_key.values(), default=0)} "
        f"(keys at {limit}: {sum(v == limit for v in db_per_key.values())}), bodies "
        f"{max(body_per_key.values(), default=0)} "
        f"(keys at {limit}: {sum(v == limit for v in body_per_key.values())}); "
        f"max executing in total: DB {db_total}, bodies {body_total}"
    )
    over_db = {k: v for k, v in db_per_key.items() if v > limit}
    over_body = {k: v for k, v in body_per_key.items() if v > limit}
    assert not over_db, f"DB showed more than {limit} executing for keys {over_db}"
    assert not over_body, f"more than {limit} bodies overlapped for keys {over_body}"
    assert set(db_per_key) <= set(keys) and set(body_per_key) == set(keys)
    assert limit in db_per_key.values(), f"no key reached {limit} in the DB: {db_per_key}"
    assert limit in body_per_key.values(), f"no key reached {limit} by bodies: {body_per_key}"
    assert db_total > limit, f"keys did not run in parallel (DB max total {db_total})"
    assert body_total > limit, f"keys did not run in parallel (bodies max total {body_total})"


# ---- 3. the limit raised at run time -------------------------------------------------


def test_limit_raised_at_run_time_applies_at_once(cluster: Cluster, body_dir: Path) -> None:
    old, new, n = 5, 10, 200
    _, f2 = two_matching_replicas(cluster)
    start_spread_workers(cluster, f2, body_dir)  # 12 slots over both replicas
    with Client(cluster.address) as client:
        assert queue_info(client, "limit-change").concurrency_limit == old
        with ExecutingSampler(cluster.database_url, "limit-change") as sampler:
            runs = client.batch_trigger(
                [{"task": "limit-change", "payload": {"i": i, "ms": 200}} for i in range(n)]
            )
            # The DB shows `old` executing, and has for a few run lifetimes.
            first_full = wait_for(
                lambda: sampler.first_at_least(old, 0),
                30,
                interval=0.02,
                message=f"{old} never executed at once",
            )
            wait_for(lambda: sampler.samples[-1].at - first_full.at >= 0.6, 10, interval=0.02)
            assert status_counts(cluster, "limit-change").get("queued", 0) > n // 2, (
                "the backlog must still be long when the limit changes"
            )
            t_update = time.time()
            q = client.update_queue("limit-change", concurrency_limit=new)
            t_answered = time.time()
            assert q.concurrency_limit == new and q.managed, q
            reached = wait_for(
                lambda: sampler.first_at_least(new, t_update),
                10,
                interval=0.02,
                message=f"{new} never executed at once after the change",
            )
            wait_all_completed(cluster, "limit-change", n, 90)
    run_ids = [r.id for r in runs]
    latency = reached.at - t_update
    attempt_statuses = check_attempts_exactly_once(cluster, "limit-change", n)
    assert attempt_statuses == {"completed": n}, attempt_statuses
    bodies, starts, ends = read_bodies(body_dir)
    check_bodies_once(run_ids, starts, ends)

    db_before = sampler.max_total(before=t_update)
    db_all = sampler.max_total()
    body_before = max_overlap(bodies, before=t_update)
    body_all = max_overlap(bodies)
    print(
        f"\n[limit-change] limit {old} -> {new} (UpdateQueue answered in "
        f"{(t_answered - t_update) * 1000:.0f} ms): the DB showed {new} executing "
        f"{latency * 1000:.0f} ms after the call; max executing before: DB {db_before}, "
        f"bodies {body_before}; overall: DB {db_all}, bodies {body_all}"
    )
    assert db_before == old, f"before the change the DB showed up to {db_before} (limit {old})"
    assert body_before <= old, f"before the change {body_before} bodies overlapped (limit {old})"
    assert db_all <= new, f"the DB showed {db_all} executing (limit {new})"
    assert body_all <= new, f"{body_all} bodies overlapped (limit {new})"
    assert body_all == new, f"bodies never reached the new limit (max {body_all})"
    assert latency < 1.5, f"the new limit took {latency:.2f} s to be used"
    with Client(cluster.address) as client:
        assert queue_info(client, "limit-change").concurrency_limit == new


# ---- 4. SIGKILL of a matching replica under load -------------------------------------


def test_limit_and_exactly_once_survive_matching_replica_sigkill(cluster: Cluster, body_dir: Path) -> None:
    limit, n = 5, 300
    m2, f2 = two_matching_replicas(cluster)
    workers = start_spread_workers(cluster, f2, body_dir, lists_for_all=True)
    with Client(cluster.address) as client:
        assert queue_info(client, "limit-kill").concurrency_limit == limit
        with ExecutingSampler(cluster.database_url, "limit-kill") as sampler:
            t0 = time.monotonic()
            runs = client.batch_trigger(
                [{"task": "limit-kill", "payload": {"i": i, "ms": 60}} for i in range(n)]
            )
            wait_for(
                lambda: status_counts(cluster, "limit-kill").get("completed", 0) >= n // 3,
                60,
                interval=0.05,
                message="the first third did not complete",
            )
            before = status_counts(cluster, "limit-kill")
            cluster.kill(m2.name)
            killed, killed_wall = time.monotonic(), time.time()
            claimed_at_kill = [
                r["id"]
                for r in cluster.sql(
                    "SELECT run_id::text AS id FROM queue_entries WHERE queue = 'limit-kill' "
                    "AND claim_token IS NOT NULL"
                )
            ]
            done = wait_all_completed(cluster, "limit-kill", n, 90)
    run_ids = [r.id for r in runs]
    assert before.get("queued", 0) > 0, f"the kill must land with a backlog: {before}"
    for w in workers:
        assert w.running, f"{w.name} died:\n{w.log_tail(40)}"

    attempt_statuses = check_attempts_exactly_once(cluster, "limit-kill", n)
    # An attempt that history started but whose assignment died with matching-2
    # never reached a worker: its lease expires (crashed) and the run goes on.
    assert set(attempt_statuses) <= {"completed", "crashed"}, attempt_statuses
    bodies, starts, ends = read_bodies(body_dir)
    check_bodies_once(run_ids, starts, ends)

    db_max = sampler.max_total()
    body_max = max_overlap(bodies)
    # Diagnostic: entries the dead replica had claimed stay invisible until their
    # claim expires (matching's claim_seconds, 10 s), which is the tail after the kill.
    late = cluster.sql(
        "SELECT r.id::text AS id, extract(epoch FROM min(a.started_at))::float8 AS at "
        "FROM runs r JOIN attempts a ON a.run_id = r.id WHERE r.id = ANY($1::uuid[]) "
        "GROUP BY r.id",
        claimed_at_kill,
    )
    orphaned = sorted(round(r["at"] - killed_wall, 1) for r in late if r["at"] - killed_wall > 5)
    db_after = sampler.max_total(after=killed_wall)
    body_after = max_overlap([b for b in bodies if b.start > killed_wall])
    print(
        f"\n[limit-kill] {n} runs, limit {limit}; matching-2 SIGKILLed at {before}; all "
        f"completed {done - killed:.2f} s after the kill ({done - t0:.2f} s in all); "
        f"attempts {attempt_statuses}; max executing: DB {db_max}, bodies {body_max}; "
        f"after the kill: DB {db_after}, bodies started after it {body_after}; entries claimed "
        f"at the kill: {len(claimed_at_kill)}, started > 5 s after it: {orphaned}"
    )
    assert db_max <= limit, f"DB showed {db_max} executing with limit {limit}"
    assert body_max <= limit, f"{body_max} bodies overlapped with limit {limit}"
    assert db_max == limit, f"the limit was never reached in the DB (max {db_max})"
    assert body_max == limit, f"the limit was never reached by bodies (max {body_max})"
    # The surviving replica alone still fills the queue to its limit.
    assert db_after == limit, f"after the kill the DB showed at most {db_after}"
    # Bodies are timed by the workers themselves: on a loaded 2-core host one
    # may start a few ms late, so their overlap may show one short of the DB's.
    assert body_after >= limit - 1, f"after the kill bodies overlapped at most {body_after}"
