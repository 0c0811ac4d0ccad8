"""A rolling restart with plain processes (issue 15, must-show 2): two replicas
of each service (the frontends given both histories and both matchings, the
matchings both histories) and four workers given both frontends, under a
steady stream of multi-step runs from clients that trigger and wait; each
service process in turn gets SIGTERM and is started again, then each in turn
SIGKILL; of the four workers (all alike), two get SIGTERM in the first phase
and the other two SIGKILL in the second, so every process is restarted.
Counted and printed: runs triggered, completed, lost (never completed), runs
a trigger made more than once, recorded steps that ran again, steps that ran
again because a SIGKILL cut them off before their record landed, and errors
seen by the clients. All must be 0 but triggered and completed, and the
last-but-one only after a SIGKILL of a worker (a step is at least once: its
body may finish in the very moment before the kill; its idempotency key is
for that). Every SIGTERM'd process exits 0.

Steps are 150 ms here (ROLLING_STEP_MS), 3 per run, from 8 clients; between
restarts each phase waits for runs to complete. tests/apps/rolling_tasks.py
logs each step's start and end (rolling_helpers.py reads it)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import Cluster, wait_for, wait_registered, worker_alive
from rolling_helpers import APP, TASK, duplicates, rolling_env

from worker_sdk import Client

LEASE = 3.0
STEPS = 3
STEP_MS = int(os.environ.get("ROLLING_STEP_MS", "150"))
CLIENTS = 8
WORKERS = 4
SLOTS = 4
RUN_TIMEOUT = 90.0
PROGRESS = 6  # runs completed after each restart before the next one
SERVICES = ("frontend", "frontend-2", "matching", "matching-2", "history", "history-2")
# The workers each phase restarts: half of them each, every worker once in all.
WORKERS_RESTARTED: dict[str, Callable[[list[Any]], list[Any]]] = {
    "SIGTERM": lambda workers: workers[: WORKERS // 2],
    "SIGKILL": lambda workers: workers[WORKERS // 2 :],
}


@dataclass
class Counts:
    triggered: list[str] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    ended_badly: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Load:
    """CLIENTS threads, each a Client of both frontends that triggers a run and
    waits for it, again and again; what each saw counted under the current phase."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.phase = "warm-up"
        self.counts: dict[str, Counts] = {}
        self.done = 0
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(RUN_TIMEOUT + 40)

    def of(self, phase: str) -> Counts:
        return self.counts.setdefault(phase, Counts())

    def _client(self) -> None:
        with Client(address=self.address) as client:
            while not self.stop.is_set():
                with self.lock:
                    counts = self.of(self.phase)
                try:
                    run = client.trigger(TASK, {"steps": STEPS, "ms": STEP_MS})
                except Exception as exc:  # noqa: BLE001 - every error a client sees is counted
                    with self.lock:
                        counts.errors.append(
                            f"{time.strftime('%H:%M:%S')} trigger: {type(exc).__name__}: {exc}"
                        )
                    self.stop.wait(0.2)  # a client's pause after an error; ends at once at the stop
                    continue
                with self.lock:
                    counts.triggered.append(run.id)
                try:
                    done = client.wait(run.id, timeout=RUN_TIMEOUT)
                except Exception as exc:  # noqa: BLE001
                    with self.lock:
                        counts.errors.append(
                            f"{time.strftime('%H:%M:%S')} wait {run.id}: {type(exc).__name__}: {exc}"
                        )
                    continue
                with self.lock:
                    if done.status == "completed":
                        counts.completed.add(run.id)
                        self.done += 1
                    else:
                        counts.ended_badly.append(f"{run.id}: {done.status} {done.error}")

    def progress(self, runs: int, what: str) -> None:
        """Waits until `runs` more runs have completed."""
        target = self.done + runs
        wait_for(lambda: self.done >= target, 60, interval=0.05, message=f"no progress after {what}")


def _wire(cluster: Cluster) -> None:
    """Every frontend to both histories and both matchings, every matching to
    both histories (the harness wires a replica to the first of each)."""
    histories = f"{cluster.services['history'].address},{cluster.services['history-2'].address}"
    matchings = f"{cluster.services['matching'].address},{cluster.services['matching-2'].address}"
    for svc in cluster.services.values():
        for flag, value in (("--history-address", histories), ("--matching-address", matchings)):
            if flag in svc.args:
                svc.args[svc.args.index(flag) + 1] = value
    cluster.env["CAIRN_HISTORY_ADDRESS"] = histories
    cluster.env["CAIRN_MATCHING_ADDRESS"] = matchings


def _registrations(worker: Any) -> int:
    return int(worker.log_text().count("worker registered"))


def test_rolling_restart_sigterm_then_sigkill(
    cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    started = time.monotonic()
    cluster = cluster_factory(start=False, lease_seconds=LEASE)
    for kind in ("history", "matching", "frontend"):
        cluster.add_replica(kind, start=False)
    _wire(cluster)
    cluster.launch()
    frontends = f"{cluster.services['frontend'].address},{cluster.services['frontend-2'].address}"
    workers = [
        cluster.start_worker(APP, slots=SLOTS, env=rolling_env(tmp_path), address=frontends)
        for _ in range(WORKERS)
    ]
    for w in workers:
        wait_registered(cluster, TASK, worker=w)
    restarts: list[tuple[str, str, float, int | None]] = []
    with Load(frontends) as load:
        load.progress(PROGRESS * 2, "the start")
        for phase in ("SIGTERM", "SIGKILL"):
            with load.lock:
                load.phase = phase
            for name in [*SERVICES, *(w.name for w in WORKERS_RESTARTED[phase](workers))]:
                t0 = time.monotonic()
                code = _restart(cluster, workers, name, phase)
                restarts.append((phase, name, time.monotonic() - t0, code))
                load.progress(PROGRESS, f"{phase} of {name}")
        with load.lock:
            load.phase = "after"
        load.progress(PROGRESS, "the last restart")
    # every run triggered ends: the clients waited for each; a run not completed is lost
    all_runs = [r for c in load.counts.values() for r in c.triggered]
    made = cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = $1", TASK)
    dups = duplicates(cluster, tmp_path, all_runs)
    rows = _table(load, cluster, dups)
    took = time.monotonic() - started
    print(f"\nrolling restart: {len(restarts)} restarts in {took:.0f} s (steps of {STEP_MS} ms)")
    for phase, name, seconds, code in restarts:
        print(f"  {phase} {name:<11} {seconds:5.1f} s{'' if code is None else f'  exit code {code}'}")
    print(
        "\n| phase | runs triggered | completed | lost | recorded step ran again "
        "| step re-run after a kill cut it off before its record | client errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(f"runs in the table: {made}, for {len(all_runs)} triggers")
    attempts = cluster.sql(
        "SELECT a.status, count(*) AS n FROM attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.task_id = $1 GROUP BY a.status ORDER BY a.status",
        TASK,
    )
    print("attempts: " + ", ".join(f"{r['n']} {r['status']}" for r in attempts))
    for phase, counts in load.counts.items():
        for e in counts.errors + counts.ended_badly:
            print(f"  {phase}: {e}")
    for w in workers:
        worker_alive(w)
    assert made == len(all_runs), f"{made} runs for {len(all_runs)} triggers: a trigger made a second run"
    assert all(not c.errors for c in load.counts.values()), "the clients saw errors"
    assert all(not c.ended_badly for c in load.counts.values()), "runs ended other than completed"
    lost = sum(r[3] for r in rows)  # the table's "lost" column
    assert lost == 0, f"{lost} runs never completed"
    assert dups.recorded == [], f"recorded steps ran again: {dups.recorded}"
    sigterm_reruns = [k for k in dups.unrecorded if _phase_of(load, k[0]) != "SIGKILL"]
    assert sigterm_reruns == [], f"steps ran again outside the SIGKILL phase: {sigterm_reruns}"
    assert all(code == 0 for phase, _, _, code in restarts if phase == "SIGTERM"), restarts


def _restart(cluster: Cluster, workers: list[Any], name: str, phase: str) -> int | None:
    """SIGTERM (returns the exit code) or SIGKILL `name`, then starts it again
    and waits until it serves (a worker: until it registered again)."""
    worker = next((w for w in workers if w.name == name), None)
    if worker is None:
        code = cluster.stop(name, timeout=30) if phase == "SIGTERM" else cluster.kill(name)
        cluster.start(name)
        return code
    before = _registrations(worker)
    code = worker.stop(timeout=30) if phase == "SIGTERM" else worker.kill()
    worker.start()
    wait_for(lambda: _registrations(worker) > before, 30, message=f"{name} did not register again")
    return code


def _phase_of(load: Load, run_id: str) -> str:
    return next((p for p, c in load.counts.items() if run_id in c.triggered), "?")


def _table(load: Load, cluster: Cluster, dups: Any) -> list[tuple[Any, ...]]:
    rows = []
    for phase, c in load.counts.items():
        ended = dict(cluster.sql("SELECT id::text, status FROM runs WHERE id = ANY($1::uuid[])", c.triggered))
        lost = sum(1 for r in c.triggered if ended.get(r) != "completed")
        mine = set(c.triggered)
        rows.append(
            (
                phase,
                len(c.triggered),
                len(c.completed),
                lost,
                sum(1 for k in dups.recorded if k[0] in mine),
                sum(1 for k in dups.unrecorded if k[0] in mine),
                len(c.errors),
            )
        )
    return rows
