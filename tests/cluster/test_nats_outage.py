"""NATS stopped under a real cluster: with no notifications, the database sweep
still carries every run to completion, each started exactly once; with NATS
back, dispatch no longer waits for the sweep (trigger-to-start latency of both
is printed).

The tasks are in tests/apps/fault_tasks.py; their side effects are read with
fault_helpers.py.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from fault_helpers import APP, attempts_of, count, fx_env, wait_all_completed
from harness import Cluster, wait_for, wait_registered

from worker_sdk import Client

# ---- NATS down: the database sweep carries the work ----------------------------


def _latencies(c: Cluster, run_ids: list[str]) -> list[float]:
    """Seconds from trigger (runs.created_at) to the start of attempt 1."""
    rows = c.sql(
        "SELECT extract(epoch FROM a.started_at - r.created_at)::float8 AS s "
        "FROM runs r JOIN attempts a ON a.run_id = r.id AND a.number = 1 "
        "WHERE r.id = ANY($1::uuid[])",
        run_ids,
    )
    assert len(rows) == len(run_ids)
    return [r["s"] for r in rows]


def _log_count(c: Cluster, service: str, text: str) -> int:
    return c.services[service].log_text().count(text)


def test_nats_down_runs_complete_by_sweep(cluster_factory: Any, private_nats: Any, fx_dir: Path) -> None:
    sweep = 1.0
    c = cluster_factory(nats=private_nats, sweep_seconds=sweep)
    w = c.start_worker(APP, slots=10, env=fx_env(fx_dir))
    wait_registered(c, worker=w)
    for svc in ("history", "matching", "frontend"):
        wait_for(
            lambda: _log_count(c, svc, "connected to NATS") >= 1, 10, message=f"{svc} never connected to NATS"
        )

    private_nats.kill()
    for svc in ("history", "matching"):
        wait_for(
            lambda: _log_count(c, svc, "disconnected from NATS") >= 1,
            10,
            message=f"{svc} did not notice NATS going away",
        )
    with Client(c.address) as client:
        down_ids = [client.trigger("fault-quick", {"i": i}).id for i in range(10)]
        wait_all_completed(c, down_ids, 20)
        down = _latencies(c, down_ids)

        reconnects = {s: _log_count(c, s, "reconnected to NATS") for s in c.services}
        private_nats.start()
        for svc in ("history", "matching", "frontend"):
            wait_for(
                lambda: _log_count(c, svc, "reconnected to NATS") > reconnects[svc],
                15,
                message=f"{svc} did not reconnect to NATS",
            )
        up_ids = [client.trigger("fault-quick", {"i": i}).id for i in range(10, 20)]
        wait_all_completed(c, up_ids, 20)
        up = _latencies(c, up_ids)

    for run_id in down_ids + up_ids:
        assert count(fx_dir, "quick-start", run_id) == 1
        assert [a["status"] for a in attempts_of(c, run_id)] == ["completed"]
    print(
        f"\ntrigger-to-start latency, NATS down (sweep every {sweep:g} s): median "
        f"{statistics.median(down) * 1000:.0f} ms, max {max(down) * 1000:.0f} ms; "
        f"NATS back: median {statistics.median(up) * 1000:.0f} ms, "
        f"max {max(up) * 1000:.0f} ms"
    )
    assert statistics.median(up) < sweep, (
        f"with NATS back, dispatch should not wait for the sweep: {sorted(up)}"
    )
