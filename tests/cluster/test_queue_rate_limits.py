"""Rate limits of a queue, against a real cluster (history, matching, frontend,
PostgreSQL, NATS): per queue and per concurrency key, never exceeded in any
sliding window, and a rate-limited run starts promptly once its window has
room.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them). Dispatch order is read from the database
(attempts.started_at, written by the transaction that starts the attempt).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flow_helpers import queue_of, start_flow_worker, starts, wait_completed
from harness import Cluster

from worker_sdk import Client, RateLimit


def window_violations(times: list[datetime], limit: int, period: float) -> list[str]:
    """Places where more than `limit` starts fall within `period` seconds: start
    i and start i+limit less than a period apart (so some sliding window of that
    length holds limit+1 starts)."""
    out = []
    for i in range(len(times) - limit):
        gap = (times[i + limit] - times[i]).total_seconds()
        if gap < period:
            out.append(f"starts {i}..{i + limit} within {gap:.3f} s")
    return out


# ---- rate limits ----------------------------------------------------------------------


def test_rate_limit_per_queue_and_per_key(cluster: Cluster, client: Client) -> None:
    q = client.update_queue("rate", concurrency_limit=0, rate_limit=(5, 1.0))
    assert q.rate_limit == RateLimit(5, timedelta(seconds=1)), q
    start_flow_worker(cluster, slots=8)
    assert queue_of(client, "rate").rate_limit == RateLimit(5, timedelta(seconds=1)), (
        "the worker's registration changed a managed queue"
    )

    client.batch_trigger([("flow-rate", {"i": i}) for i in range(20)])
    wait_completed(cluster, "flow-rate", 20, timeout=40)
    times = [at for at, _, _ in starts(cluster, "flow-rate")]
    assert len(times) == 20
    span = (times[-1] - times[0]).total_seconds()
    offsets = " ".join(f"{(t - times[0]).total_seconds():.2f}" for t in times)
    print(
        f"\n[rate] 5/1s: 20 starts over {span:.2f} s, {19 / span:.2f} starts/s after the "
        f"first; start offsets (s): {offsets}"
    )
    bad = window_violations(times, 5, 1.0)
    assert not bad, f"rate limit 5/1s exceeded: {bad}"
    assert span >= 3.0, f"20 starts at 5/s took only {span:.3f} s"

    client.update_queue("rate", rate_limit=(2, 1.0))
    client.batch_trigger(
        [
            {"task": "flow-rate", "payload": {"key": k, "i": i}, "concurrency_key": k}
            for i in range(6)
            for k in ("k1", "k2")
        ]
    )
    wait_completed(cluster, "flow-rate", 32, timeout=40)
    for k in ("k1", "k2"):
        keyed = [at for at, key, _ in starts(cluster, "flow-rate") if key == k]
        assert len(keyed) == 6
        span = (keyed[-1] - keyed[0]).total_seconds()
        print(f"[rate] 2/1s per key, key {k}: 6 starts over {span:.2f} s, {5 / span:.2f} starts/s")
        bad = window_violations(keyed, 2, 1.0)
        assert not bad, f"rate limit 2/1s of key {k} exceeded: {bad}"
    both = sorted(at for at, key, _ in starts(cluster, "flow-rate") if key in ("k1", "k2"))
    # Per key, not per queue: the two keys together go faster than one key may.
    assert window_violations(both, 2, 1.0), "the per-key limit acted as a queue-wide limit"


# ---- beyond the basics ---------------------------------------------------------------
# Kept last, so that under `pytest -x` a failure here does not hide the tests above.
# Each of these failed against the code it was written for; see the report.


def test_rate_limited_runs_start_when_their_window_opens(cluster: Cluster, client: Client) -> None:
    """At 5 per 1 s, once the first 5 started, the 6th may start 1 s after the
    1st, the 7th 1 s after the 2nd, and so on. A run held back by the rate limit
    should start when its window has room (within 0.5 s here), not whenever a
    later sweep happens to look."""
    client.update_queue("rate", rate_limit=(5, 1.0))
    start_flow_worker(cluster, slots=8)
    client.batch_trigger([("flow-rate", {"i": i}) for i in range(20)])
    wait_completed(cluster, "flow-rate", 20, timeout=40)
    times = [at for at, _, _ in starts(cluster, "flow-rate")]
    assert not window_violations(times, 5, 1.0)
    late = [(times[i] - times[i - 5]).total_seconds() - 1.0 for i in range(5, 20)]
    span = (times[-1] - times[0]).total_seconds()
    print(
        f"\n[rate] 5/1s: 20 starts over {span:.2f} s ({19 / span:.2f}/s; at most 5/s, "
        f"ideally 3.0 s); lateness past the window's opening (s): "
        f"{' '.join(f'{x:.2f}' for x in late)}"
    )
    assert max(late) <= 0.5, (
        f"rate-limited runs started up to {max(late):.2f} s after their "
        f"window had room (20 starts took {span:.2f} s at 5/s)"
    )
