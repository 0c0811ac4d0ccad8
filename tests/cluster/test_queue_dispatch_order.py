"""Dispatch order on a queue, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): fairness between concurrency keys (a key with 2000
queued runs does not starve another; without a concurrency limit keys are
served round robin), priorities within a key, and a keyed backlog beside an
unkeyed queue served by one worker.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them). Dispatch order is read from the database
(attempts.started_at, written by the transaction that starts the attempt).
"""

from __future__ import annotations

import uuid

from flow_helpers import (
    RUN_TIMEOUT,
    queue_of,
    register_without_polling,
    start_flow_worker,
    starts,
    wait_completed,
)
from harness import Cluster, wait_for

from worker_sdk import Client


def longest_streak(keys: list[str]) -> tuple[int, str]:
    best, run_len, best_key = 0, 0, ""
    for i, k in enumerate(keys):
        run_len = run_len + 1 if i and keys[i - 1] == k else 1
        if run_len > best:
            best, best_key = run_len, k
    return best, best_key


# ---- fairness between concurrency keys ----------------------------------------------


def test_a_key_with_2000_queued_runs_does_not_starve_another_key(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    fair = queue_of(client, "fair")
    assert fair.concurrency_limit == 1, fair
    for chunk in range(2):
        runs = client.batch_trigger(
            [
                {"task": "flow-fair", "payload": {"key": "A", "i": chunk * 1000 + i}, "concurrency_key": "A"}
                for i in range(1000)
            ]
        )
        assert len(runs) == 1000
    b = client.trigger("flow-fair", {"key": "B"}, concurrency_key="B")
    assert b.concurrency_key == "B", b
    assert queue_of(client, "fair").depth == 2001
    assert cluster.sql_value("SELECT count(*) FROM attempts") == 0, "something polled"

    start_flow_worker(cluster, slots=1)
    b_started = wait_for(
        lambda: cluster.sql_value("SELECT started_at FROM attempts WHERE run_id = $1", uuid.UUID(b.id)),
        30,
        interval=0.05,
        message="the single run of key B never started",
    )
    order = starts(cluster, "flow-fair")
    a_before = sum(1 for at, key, _ in order if key == "A" and at < b_started)
    print(
        f"\n[fairness] limit 1 per key: {a_before} of key A's 2000 queued runs started "
        f"before key B's single run"
    )
    assert a_before <= 5, f"key B waited behind {a_before} runs of key A"
    done = client.wait(b.id, timeout=RUN_TIMEOUT)
    assert done.status == "completed", done


def test_keys_are_served_round_robin_without_a_concurrency_limit(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    assert queue_of(client, "fair-open").concurrency_limit is None  # no limit
    per_key = 12
    for key in "ABC":  # all of A's runs first, then B's, then C's
        client.batch_trigger(
            [
                {"task": "flow-open", "payload": {"key": key, "i": i}, "concurrency_key": key}
                for i in range(per_key)
            ]
        )
    assert queue_of(client, "fair-open").depth == 3 * per_key

    start_flow_worker(cluster, slots=1)
    wait_completed(cluster, "flow-open", 3 * per_key)
    keys = [key for _, key, _ in starts(cluster, "flow-open")]
    assert len(keys) == 3 * per_key
    first = keys[:20]
    print(f"\n[fairness] no limit, keys A/B/C: start order {''.join(keys)}")
    streak, key = longest_streak(first)
    assert streak <= 2, f"key {key} started {streak} times in a row: {''.join(first)}"
    for k in "ABC":
        assert first.count(k) >= 5, f"key {k} got {first.count(k)} of the first 20 starts: {''.join(first)}"
    # Over the whole order, as long as every key still has work, no key runs ahead.
    exhausted = min(max(i for i, k in enumerate(keys) if k == key) for key in "ABC")
    streak, key = longest_streak(keys[: exhausted + 1])
    assert streak <= 2, f"key {key} started {streak} times in a row: {''.join(keys)}"


# ---- priorities -----------------------------------------------------------------------


def test_high_priority_runs_start_first_within_a_key(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    # One by one, so that their arrival order is defined (the runs of one batch
    # share their transaction's now(), and so their queue entries' available_at).
    low = [client.trigger("flow-prio", {"p": 0, "i": i}, concurrency_key="tenant-1") for i in range(20)]
    high = client.batch_trigger(
        [
            {"task": "flow-prio", "payload": {"p": 10, "i": i}, "priority": 10, "concurrency_key": "tenant-1"}
            for i in range(5)
        ]
    )
    assert all(r.priority == 10 for r in high)
    assert (
        cluster.sql_value(
            "SELECT count(*) FROM queue_entries WHERE queue = 'prio' "
            "AND priority = 10 AND concurrency_key = 'tenant-1'"
        )
        == 5
    )

    start_flow_worker(cluster, slots=1)
    wait_completed(cluster, "flow-prio", 25)
    order = [str(run_id) for _, _, run_id in starts(cluster, "flow-prio")]
    high_ids = {r.id for r in high}
    positions = sorted(i for i, rid in enumerate(order) if rid in high_ids)
    print(f"\n[priority] positions of the 5 priority-10 runs in the start order: {positions}")
    assert positions == [0, 1, 2, 3, 4], positions
    assert order[5:] == [r.id for r in low], "equal priorities start in the order triggered"


# ---- beyond the basics ---------------------------------------------------------------
# Kept last, so that under `pytest -x` a failure here does not hide the tests above.
# Each of these failed against the code it was written for; see the report.


def test_a_keyed_backlog_does_not_starve_an_unkeyed_queue(cluster: Cluster, client: Client) -> None:
    """One worker serves two queues: "fair" with 200 runs of key A, and "prio"
    (no keys) with a single run triggered after them. As between keys, the
    single run must start within a handful of dispatches."""
    register_without_polling(cluster)
    client.batch_trigger(
        [{"task": "flow-fair", "payload": {"i": i}, "concurrency_key": "A"} for i in range(200)]
    )
    other = client.trigger("flow-prio", {"unkeyed": True})
    start_flow_worker(cluster, slots=1)
    other_started = wait_for(
        lambda: cluster.sql_value("SELECT started_at FROM attempts WHERE run_id = $1", uuid.UUID(other.id)),
        60,
        interval=0.05,
        message="the run of the unkeyed queue never started",
    )
    before = sum(1 for at, _, _ in starts(cluster, "flow-fair") if at < other_started)
    print(
        f"\n[fairness] {before} of 200 keyed runs of queue 'fair' started before the single "
        f"run of the unkeyed queue 'prio'"
    )
    assert before <= 5, f"the unkeyed queue's run waited behind {before} runs of a keyed queue"
