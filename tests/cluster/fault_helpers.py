"""What the fault-injection tests (test_crash_recovery.py, test_nats_outage.py,
test_lease_fencing.py, test_dev_restart.py) share. Their tasks are in
tests/apps/fault_tasks.py. The side effects of those tasks are lines
"<event> <run_id> <attempt> <pid>" in FAULT_TASKS_DIR/events.log (the ``fx_dir``
fixture, tests/cluster/conftest.py), which these helpers read and count;
markers and go-files in the same directory let a test catch a task at a
precise point (the task polls for its go-file with asyncio.sleep, heartbeating
all the while). The rest read runs, attempts and steps from the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import Cluster, wait_for

from cairn import payloads

APP = "tests.apps.fault_tasks"


def fx_env(d: Path) -> dict[str, str]:
    return {"FAULT_TASKS_DIR": str(d)}


def events(d: Path) -> list[tuple[str, str, int, int]]:
    """Every side-effect line: (event, run_id, attempt, pid)."""
    path = d / "events.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, run_id, attempt, pid = line.split()
        out.append((event, run_id, int(attempt), int(pid)))
    return out


def count(d: Path, event: str, run_id: str, attempt: int | None = None) -> int:
    return sum(
        1 for e, r, a, _ in events(d) if e == event and r == run_id and (attempt is None or a == attempt)
    )


def run_status(c: Cluster, run_id: str) -> str | None:
    return c.sql_value("SELECT status FROM runs WHERE id = $1::uuid", run_id)


def attempts_of(c: Cluster, run_id: str) -> list[Any]:
    return c.sql(
        "SELECT number, status, worker_id, started_at, finished_at, error "
        "FROM attempts WHERE run_id = $1::uuid ORDER BY number",
        run_id,
    )


def steps_of(c: Cluster, run_id: str) -> list[Any]:
    return c.sql(
        "SELECT position, name, status, attempt FROM steps WHERE run_id = $1::uuid ORDER BY position", run_id
    )


def error_type(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, str):  # asyncpg returns jsonb as text without a codec
        error = json.loads(error)
    return error.get("type")


def output_of(c: Cluster, run_id: str) -> Any:
    row = c.sql("SELECT output, output_encoding FROM runs WHERE id = $1::uuid", run_id)[0]
    return payloads.decode(bytes(row["output"]), row["output_encoding"])


def status_counts(c: Cluster, run_ids: list[str]) -> dict[str, int]:
    rows = c.sql("SELECT status, count(*) AS n FROM runs WHERE id = ANY($1::uuid[]) GROUP BY status", run_ids)
    return {r["status"]: r["n"] for r in rows}


def wait_all_completed(c: Cluster, run_ids: list[str], timeout: float) -> None:
    def done() -> bool:
        counts = status_counts(c, run_ids)
        bad = {
            s: n for s, n in counts.items() if s in ("failed", "canceled", "crashed", "timed_out", "expired")
        }
        if bad:
            raise AssertionError(f"runs ended badly: {counts}")
        return counts.get("completed", 0) == len(run_ids)

    wait_for(
        done,
        timeout,
        interval=0.05,
        message=f"not all {len(run_ids)} runs completed; statuses {status_counts(c, run_ids)}",
    )
