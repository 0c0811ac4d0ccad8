"""What the restart tests (test_worker_shutdown.py, test_rolling_restart.py)
share: the workers' environment and the step log of tests/apps/rolling_tasks.py
("<event> <run_id> <position> <attempt> <pid>" lines), read into the executions
of each step, and the duplicates among them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from harness import Cluster

APP = "tests.apps.rolling_tasks"
TASK = "rolling-steps"


class Execution(NamedTuple):
    run_id: str
    position: int
    attempt: int
    pid: int


def rolling_env(d: Path) -> dict[str, str]:
    return {"ROLLING_TASKS_DIR": str(d)}


def lines(d: Path, event: str) -> list[Execution]:
    """The step log's lines of one event ("start" or "done")."""
    path = d / "steps.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        kind, run_id, position, attempt, pid = line.split()
        if kind == event:
            out.append(Execution(run_id, int(position), int(attempt), int(pid)))
    return out


def done_by_step(d: Path) -> dict[tuple[str, int], list[Execution]]:
    """The finished executions of each (run, position)."""
    found: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for e in lines(d, "done"):
        found[(e.run_id, e.position)].append(e)
    return found


class Duplicates(NamedTuple):
    """Steps whose body finished more than once. `recorded`: an execution in an
    attempt after the one that recorded the step, or a second one in that
    attempt: a recorded step ran again (never allowed). `unrecorded`: an
    execution in an earlier attempt whose record never landed (its worker was
    killed between the step's end and its record): at-least-once, the step's
    idempotency key is for this."""

    recorded: list[tuple[str, int]]
    unrecorded: list[tuple[str, int]]


def duplicates(cluster: Cluster, d: Path, run_ids: list[str]) -> Duplicates:
    rows = cluster.sql(
        "SELECT run_id::text AS run_id, position, attempt FROM steps WHERE run_id = ANY($1::uuid[])", run_ids
    )
    recorded_by = {(r["run_id"], r["position"]): r["attempt"] for r in rows}
    recorded, unrecorded = [], []
    for key, runs in done_by_step(d).items():
        if len(runs) < 2:
            continue
        by = recorded_by.get(key)
        if by is not None and (any(e.attempt > by for e in runs) or sum(e.attempt == by for e in runs) > 1):
            recorded.append(key)
        else:
            unrecorded.append(key)
    return Duplicates(sorted(recorded), sorted(unrecorded))
