"""Queue flow control end to end, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): fairness between concurrency keys, priorities,
rate limits (per queue and per key), backpressure (max_depth), pausing and
resuming a queue, workers that serve only some queues, several replicas of every
service with a frontend killed, and the refusal of bad QueueService requests;
then max_depth under concurrent triggers, a keyed queue beside an unkeyed one on
one worker, an idempotent retry into a full queue, and how promptly a
rate-limited run starts once its window has room.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks`. Dispatch order is read from the database
(attempts.started_at, written by the transaction that starts the attempt).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness import (
    REPO_ROOT,
    TESTS_DIR,
    Cluster,
    WorkerProcess,
    assert_clean,
    grpcurl,
    json_payload,
    table_counts,
    wait_for,
    wait_registered,
    worker_alive,
)

from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc, run_service_pb2_grpc
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import AsyncClient, Client, NotFoundError, Queue, QueueFullError, RateLimit, UnavailableError

APPS_DIR = TESTS_DIR / "apps"
TASKS_MODULE = "flow_tasks"
ALL_TASKS = (
    "flow-fair",
    "flow-open",
    "flow-prio",
    "flow-rate",
    "flow-depth",
    "flow-gated",
    "flow-a",
    "flow-b",
    "flow-replica",
)
JSON = "json/plain"
RPC_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0


# ---- helpers ------------------------------------------------------------------------


def start_flow_worker(
    cluster: Cluster,
    *,
    slots: int = 4,
    queues: tuple[str, ...] = (),
    address: str | None = None,
    expect: tuple[str, ...] = ALL_TASKS,
) -> WorkerProcess:
    """A `cairn worker flow_tasks` process (with `--queue Q` for each of queues);
    returns once the tasks in `expect` are registered and the worker logged its
    registration, i.e. it is polling."""
    args = [a for q in queues for a in ("--queue", q)]
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, slots=slots, args=args, address=address)
    wait_registered(cluster, *expect, worker=worker)
    return worker


def register_without_polling(cluster: Cluster) -> None:
    """Registers every task of flow_tasks (and creates their queues) with a worker
    that is then stopped, so no one polls while the test fills its queues."""
    worker = start_flow_worker(cluster)
    assert worker.stop() == 0, worker.log_tail(40)


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def queue_rows(cluster: Cluster) -> list[dict[str, Any]]:
    return [dict(r) for r in cluster.sql("SELECT * FROM queues ORDER BY namespace, name")]


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    """Runs call; asserts it fails with `code`, a message naming every word and no
    stack trace. Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for word in words:
        assert word in details, f"{word!r} not named in {details!r}"
    assert_clean(details)
    return details


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def cairn_cli(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args, "--address", cluster.address],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )


def cli_queues(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """`cairn queues list --json`, by queue name."""
    proc = cairn_cli(cluster, "queues", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {q["name"]: q for q in map(json.loads, proc.stdout.splitlines())}


def queue_of(client: Client, name: str) -> Queue:
    found = [q for q in client.list_queues() if q.name == name]
    assert found, f"queue {name!r} not listed"
    return found[0]


def hold(check: Callable[[], Any], duration: float, message: str) -> None:
    """Keeps calling check (which raises AssertionError when the condition it
    guards is broken) for `duration` seconds: a bounded observation that fails at
    once when something happens that must not."""
    end = time.monotonic() + duration

    def still_holds() -> bool:
        check()
        return time.monotonic() >= end

    wait_for(still_holds, duration + 10, interval=0.1, message=message)


def starts(cluster: Cluster, task_id: str) -> list[tuple[datetime, str, uuid.UUID]]:
    """(started_at, concurrency key, run id) of every attempt of the task's runs,
    in start order."""
    rows = cluster.sql(
        "SELECT a.started_at, r.concurrency_key, r.id FROM attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.task_id = $1 ORDER BY a.started_at, a.run_id",
        task_id,
    )
    return [(r["started_at"], r["concurrency_key"], r["id"]) for r in rows]


def count_status(cluster: Cluster, task_id: str, status: str) -> int:
    return cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = $1 AND status = $2", task_id, status)


def wait_completed(cluster: Cluster, task_id: str, n: int, timeout: float = RUN_TIMEOUT) -> None:
    """Until n runs of the task completed; fails at once if one ended otherwise."""

    def done() -> bool:
        bad = cluster.sql(
            "SELECT id, status, error FROM runs WHERE task_id = $1 AND status IN "
            "('failed', 'crashed', 'canceled', 'timed_out', 'expired')",
            task_id,
        )
        assert not bad, f"runs of {task_id} ended badly: {[dict(r) for r in bad]}"
        return count_status(cluster, task_id, "completed") == n

    wait_for(
        done,
        timeout,
        interval=0.1,
        message=f"{n} runs of {task_id} never completed "
        f"(completed: {count_status(cluster, task_id, 'completed')})",
    )


def longest_streak(keys: list[str]) -> tuple[int, str]:
    best, run_len, best_key = 0, 0, ""
    for i, k in enumerate(keys):
        run_len = run_len + 1 if i and keys[i - 1] == k else 1
        if run_len > best:
            best, best_key = run_len, k
    return best, best_key


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


# ---- 1. fairness between concurrency keys ----------------------------------------------


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


# ---- 2. priorities -----------------------------------------------------------------------


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


# ---- 3. rate limits ----------------------------------------------------------------------


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


# ---- 4. backpressure ---------------------------------------------------------------------


def test_max_depth_refuses_triggers_and_writes_nothing(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    q = client.update_queue("bounded", max_depth=10)
    assert q.max_depth == 10 and q.managed, q

    accepted = [client.trigger("flow-depth", {"i": i}).id for i in range(8)]
    before = table_counts(cluster)
    with pytest.raises(QueueFullError) as info:  # 8 + 3 > 10: refused whole
        client.batch_trigger([("flow-depth", {"batch": i}) for i in range(3)])
    assert "'bounded'" in str(info.value), info.value
    assert table_counts(cluster) == before, "a refused batch wrote rows"
    accepted += [r.id for r in client.batch_trigger([("flow-depth", {"batch": i}) for i in range(2)])]
    assert queue_of(client, "bounded").depth == 10

    before = table_counts(cluster)
    with pytest.raises(QueueFullError) as info:
        client.trigger("flow-depth", {"i": "eleventh"})
    message = str(info.value)
    assert "'bounded'" in message and "10" in message, message
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_clean(message)
    stub = run_service_pb2_grpc.RunServiceStub(cluster.channel())
    expect_rpc_error(
        lambda: stub.TriggerRun(
            rpb.TriggerRunRequest(task_id="flow-depth", payload=json_payload({"via": "grpc"})),
            timeout=RPC_TIMEOUT,
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "'bounded'",
    )
    proc = grpcurl(
        cluster.address,
        "cairn.v1.RunService/TriggerRun",
        data={"task_id": "flow-depth", "payload": {"data": "e30=", "encoding": JSON}},
    )
    assert proc.returncode != 0, proc.stdout
    assert "ResourceExhausted" in proc.stderr and "'bounded'" in proc.stderr, proc.stderr
    assert_clean(proc.stderr)
    assert table_counts(cluster) == before, "a refused trigger wrote rows"

    start_flow_worker(cluster, slots=1)
    wait_for(lambda: queue_of(client, "bounded").depth < 10, 20, message="the worker never drained the queue")
    accepted.append(client.trigger("flow-depth", {"i": "after drain"}).id)
    assert len(set(accepted)) == 11
    wait_completed(cluster, "flow-depth", 11)
    assert queue_of(client, "bounded").depth == 0

    before = table_counts(cluster)
    with pytest.raises(QueueFullError):  # 11 > 10 even into an empty queue
        client.batch_trigger([("flow-depth", {"big": i}) for i in range(11)])
    assert table_counts(cluster) == before, "a refused batch wrote rows"
    client.batch_trigger([("flow-depth", {"fits": i}) for i in range(10)])
    wait_completed(cluster, "flow-depth", 21)
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'flow-depth'") == 21


# ---- 5. pause and resume -----------------------------------------------------------------


def test_paused_queue_dispatches_nothing_until_resumed(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    start_flow_worker(cluster, slots=2)
    proc = cairn_cli(cluster, "queues", "pause", "pausable")
    assert proc.returncode == 0, proc.stderr
    assert "paused" in proc.stdout, proc.stdout

    release = tmp_path / "release"
    runs = [client.trigger("flow-gated", {"release": str(release), "n": i}).id for i in range(5)]
    ids = [uuid.UUID(r) for r in runs]

    def nothing_started() -> None:
        n = cluster.sql_value("SELECT count(*) FROM attempts WHERE run_id = ANY($1)", ids)
        assert n == 0, f"{n} runs of a paused queue started"
        statuses = {r["status"] for r in cluster.sql("SELECT status FROM runs WHERE id = ANY($1)", ids)}
        assert statuses == {"queued"}, statuses

    hold(nothing_started, 1.5, "a paused queue dispatched")
    listed = cli_queues(cluster)["pausable"]
    assert listed["paused"] is True and listed["depth"] == 5 and listed["running"] == 0, listed
    table = cairn_cli(cluster, "queues", "list")
    assert table.returncode == 0, table.stderr
    row = [line.split() for line in table.stdout.splitlines() if line.startswith("pausable")]
    assert row and row[0][-3:] == ["yes", "5", "0"], table.stdout

    proc = cairn_cli(cluster, "queues", "resume", "pausable", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["paused"] is False, proc.stdout
    # Two slots, five gated runs: two execute and hold, three stay queued.
    wait_for(
        lambda: (lambda q: q.running == 2 and q.depth == 3)(queue_of(client, "pausable")),
        15,
        message="the resumed queue did not dispatch",
    )
    listed = cli_queues(cluster)["pausable"]
    assert (listed["paused"], listed["running"], listed["depth"]) == (False, 2, 3), listed
    release.touch()
    for r in runs:
        done = client.wait(r, timeout=RUN_TIMEOUT)
        assert done.status == "completed", done
    listed = cli_queues(cluster)["pausable"]
    assert (listed["depth"], listed["running"]) == (0, 0), listed


# ---- 6. workers that serve some queues ---------------------------------------------------


def test_worker_serves_only_its_queues(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    worker_a = start_flow_worker(cluster, slots=2, queues=("q-a",), expect=("flow-a",))
    assert "queues=q-a" in worker_a.log_text(), worker_a.log_tail(20)
    a_runs = [client.trigger("flow-a", {"i": i}).id for i in range(3)]
    b_run = client.trigger("flow-b", {"i": 0}).id
    for r in a_runs:
        done = client.wait(r, timeout=RUN_TIMEOUT)
        assert done.status == "completed", done

    def b_untouched() -> None:
        run = client.get(b_run)
        assert run.status == "queued" and not run.attempts, run

    hold(b_untouched, 1.5, "the q-a worker took a run of queue q-b")
    worker_ids = {
        r["worker_id"]
        for r in cluster.sql(
            "SELECT worker_id FROM attempts WHERE run_id = ANY($1)", [uuid.UUID(r) for r in a_runs]
        )
    }
    assert len(worker_ids) == 1, worker_ids
    (worker_a_id,) = worker_ids
    assert cluster.sql_value("SELECT task_ids FROM workers WHERE worker_id = $1", worker_a_id) == ["flow-a"]

    start_flow_worker(cluster, slots=1, queues=("q-b",), expect=("flow-b",))
    done = client.wait(b_run, timeout=RUN_TIMEOUT)
    assert done.status == "completed", done
    assert done.attempts[0].worker_id != worker_a_id, done.attempts


# ---- 7. replicas -------------------------------------------------------------------------


def test_two_of_each_service_and_a_frontend_killed(cluster: Cluster) -> None:
    """history-2, matching-2 (talking to history-2) and frontend-2 (talking to
    matching-2 and history-2) beside the first three; a worker and a Client get
    both frontends as "a,b". The harness wires a replica to the history in
    cluster.env["CAIRN_HISTORY_ADDRESS"], so that is pointed at history-2 while
    the replicas are added. After frontend 1 is SIGKILLed, TriggerRun (which the
    SDK does not retry, see worker_sdk/_grpc.py RETRYABLE_METHODS) is retried here
    on UnavailableError with an idempotency key per run; reads and waits are
    retried by the SDK itself."""
    history_2 = cluster.add_replica("history")
    saved = cluster.env["CAIRN_HISTORY_ADDRESS"]
    cluster.env["CAIRN_HISTORY_ADDRESS"] = history_2.address
    try:
        matching_2 = cluster.add_replica("matching")
        frontend_2 = cluster.add_replica("frontend", matching=matching_2.name)
    finally:
        cluster.env["CAIRN_HISTORY_ADDRESS"] = saved

    def flag(args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    assert flag(matching_2.args, "--history-address") == history_2.address
    assert flag(frontend_2.args, "--history-address") == history_2.address
    assert flag(frontend_2.args, "--matching-address") == matching_2.address
    assert flag(cluster.services["frontend"].args, "--matching-address") == cluster.matching_address

    both = f"{cluster.address},{frontend_2.address}"
    worker = start_flow_worker(cluster, slots=4, address=both)
    unavailable = 0

    def trigger(client: Client, key: str) -> str:
        def once() -> str:
            nonlocal unavailable
            try:
                return client.trigger("flow-replica", {"key": key}, idempotency_key=key).id
            except UnavailableError:
                unavailable += 1
                raise

        return wait_for(
            once, 30, interval=0.1, ignore=(UnavailableError,), message=f"trigger {key} never got through"
        )

    with Client(address=both) as client:
        first = [trigger(client, f"first-{i}") for i in range(50)]
        for r in first:
            done = client.wait(r, timeout=RUN_TIMEOUT)
            assert done.status == "completed", done
        cluster.kill("frontend")
        t0 = time.monotonic()
        second = [trigger(client, f"second-{i}") for i in range(50)]
        for r in second:
            done = client.wait(r, timeout=RUN_TIMEOUT)
            assert done.status == "completed", done
            assert done.output == {"payload": {"key": done.idempotency_key}, "run_id": r}, done
        took = time.monotonic() - t0
    worker_alive(worker)
    assert len(set(first + second)) == 100
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'flow-replica'") == 100
    assert count_status(cluster, "flow-replica", "completed") == 100
    retried = cluster.sql_value(
        "SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.task_id = 'flow-replica' AND a.number > 1"
    )
    print(
        f"\n[replicas] 100 runs completed; after frontend 1 was killed: 50 runs in "
        f"{took:.2f} s, {unavailable} trigger(s) retried on UNAVAILABLE, {retried} "
        f"attempt(s) run again"
    )


# ---- 8. bad QueueService requests --------------------------------------------------------


def test_bad_queue_requests_are_refused_and_nothing_is_written(cluster: Cluster, client: Client) -> None:
    register_without_polling(cluster)
    stub = queue_service_pb2_grpc.QueueServiceStub(cluster.channel())
    before = queue_rows(cluster)
    assert before, "registration created no queues"

    def update(**fields: Any) -> Callable[[], Any]:
        return lambda: stub.UpdateQueue(qpb.UpdateQueueRequest(**fields), timeout=RPC_TIMEOUT)

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expect_rpc_error(update(name="fair", concurrency_limit=-1), invalid, "concurrency_limit")
    expect_rpc_error(update(name="new-queue", concurrency_limit=-1), invalid, "concurrency_limit")
    expect_rpc_error(update(name="fair", rate_limit=qpb.RateLimit(limit=5)), invalid, "rate_limit.period")
    expect_rpc_error(
        update(name="fair", rate_limit=qpb.RateLimit(limit=5, period=seconds(-1))),
        invalid,
        "rate_limit.period",
    )
    expect_rpc_error(
        update(name="fair", rate_limit=qpb.RateLimit(limit=-1, period=seconds(1))),
        invalid,
        "rate_limit.limit",
    )
    expect_rpc_error(update(name="fair", max_depth=-1), invalid, "max_depth")
    expect_rpc_error(update(name="", concurrency_limit=1), invalid, "name")
    expect_rpc_error(update(name="bad name!", concurrency_limit=1), invalid, "name")
    expect_rpc_error(
        lambda: stub.PauseQueue(qpb.PauseQueueRequest(name=""), timeout=RPC_TIMEOUT), invalid, "name"
    )
    expect_rpc_error(
        lambda: stub.PauseQueue(qpb.PauseQueueRequest(name="no-such-queue"), timeout=RPC_TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "no-such-queue",
    )
    expect_rpc_error(
        lambda: stub.ResumeQueue(qpb.ResumeQueueRequest(name="no-such-queue"), timeout=RPC_TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
        "no-such-queue",
    )
    with pytest.raises(NotFoundError) as info:
        client.pause_queue("no-such-queue")
    assert "no-such-queue" in str(info.value)
    proc = cairn_cli(cluster, "queues", "pause", "no-such-queue")
    assert proc.returncode != 0 and "no-such-queue" in proc.stderr, (proc.stdout, proc.stderr)
    assert_clean(proc.stderr)
    assert queue_rows(cluster) == before, "a refused request changed the queues table"


# ---- 9. beyond the basics ---------------------------------------------------------------
# Kept last, so that under `pytest -x` a failure here does not hide the tests above.
# Each of these failed against the code it was written for; see the report.


def test_max_depth_holds_under_concurrent_triggers(cluster: Cluster, client: Client) -> None:
    """40 triggers at once into a queue with room for 5: exactly 5 get in. (Each
    trigger is its own transaction in history; the depth check must serialize
    them, as the concurrency and rate limits do with the queue row's lock.)"""
    register_without_polling(cluster)
    client.update_queue("bounded", max_depth=10)
    client.batch_trigger([("flow-depth", {"i": i}) for i in range(5)])

    async def race() -> list[Any]:
        async with AsyncClient(address=cluster.address) as ac:
            return await asyncio.gather(
                *[ac.trigger("flow-depth", {"race": i}) for i in range(40)], return_exceptions=True
            )

    results = asyncio.run(race())
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, QueueFullError) for e in refused), refused
    depth = queue_of(client, "bounded").depth
    print(
        f"\n[backpressure] 40 concurrent triggers with room for 5: {len(accepted)} accepted, "
        f"{len(refused)} refused; depth {depth} (max_depth 10)"
    )
    assert depth == cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'flow-depth'")
    assert len(accepted) == 5 and depth == 10, (
        f"max_depth 10 exceeded: {len(accepted)} of 40 concurrent triggers accepted, depth {depth}"
    )


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


def test_an_idempotent_retry_into_a_full_queue_returns_the_existing_run(
    cluster: Cluster, client: Client
) -> None:
    """A trigger whose answer was lost is retried with its idempotency key (the
    README's advice); if the queue filled up meanwhile, the retry must still
    return the run the first call created, not QueueFullError ("nothing was
    created"), which would be false."""
    register_without_polling(cluster)
    client.update_queue("bounded", max_depth=3)
    first = client.trigger("flow-depth", {"i": 0}, idempotency_key="order-1")
    client.batch_trigger([("flow-depth", {"i": i}) for i in (1, 2)])
    assert queue_of(client, "bounded").depth == 3
    before = table_counts(cluster)
    try:
        again = client.trigger("flow-depth", {"i": 0}, idempotency_key="order-1")
    except QueueFullError as exc:
        pytest.fail(f"the retry of an accepted trigger was refused as a full queue: {exc}")
    assert again.id == first.id
    assert table_counts(cluster) == before


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
