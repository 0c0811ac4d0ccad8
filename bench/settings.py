"""The benchmark's fixed parameters: where things are, the workloads' sizes, and
how hard each workload pushes (calls in flight, batch size, poll interval)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

SERVICES = ("history", "matching", "frontend")
WORKLOADS = ("a", "b", "c", "d", "e", "f", "g", "w", "floor")
FULL = {
    "a": 5000,
    "b": 1000,
    "c": 200,
    "d": 1000,
    "e": 500,
    "f": 10000,
    "g": 1_000_000,
    "w_one": 40,  # w: runs one at a time, per condition and round
    "w_flight": 1000,  # w: runs with --watchers in flight, per condition and round
}
QUICK_G = 50_000
TRIGGER_INFLIGHT = 64
BATCH_SIZE = 1000
BATCH_INFLIGHT = 2
LIMITED_SLEEP = 0.01
POLL_INTERVAL = 0.02
WATCH_STEPS = 20  # w: steps per run
SETTLE = 1.2  # PostgreSQL flushes a backend's statistics about once a second
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "peers" / "requirements.txt"
FAILED = ("failed", "canceled", "crashed", "timed_out", "expired")


def sizes_for(quick: bool) -> dict[str, int]:
    """N of each workload: FULL, or with --quick every N divided by 10 (g: QUICK_G)."""
    if not quick:
        return dict(FULL)
    out = {k: max(1, v // 10) for k, v in FULL.items()}
    out["g"] = QUICK_G
    return out
