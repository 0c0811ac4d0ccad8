"""What the queue flow-control tests share (test_queue_dispatch_order.py,
test_queue_rate_limits.py, test_queue_backpressure.py, test_queue_management.py,
test_worker_queues.py, test_service_replicas.py): starting a worker of
tests/apps/flow_tasks.py (run with cwd=tests/apps, so it imports as
`flow_tasks`), reading queues, attempts' start order and run statuses, and
checking a refused RPC. Dispatch order is read from the database
(attempts.started_at, written by the transaction that starts the attempt).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
import pytest
from harness import TESTS_DIR, Cluster, WorkerProcess, assert_clean, wait_for, wait_registered

from worker_sdk import Client, Queue

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
RPC_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0


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


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    """Runs call; asserts it fails with `code`, a message naming every word (as
    written: unlike harness.expect_rpc_error, case counts) and no stack trace.
    Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for word in words:
        assert word in details, f"{word!r} not named in {details!r}"
    assert_clean(details)
    return details


def queue_of(client: Client, name: str) -> Queue:
    found = [q for q in client.list_queues() if q.name == name]
    assert found, f"queue {name!r} not listed"
    return found[0]


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
