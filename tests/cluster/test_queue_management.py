"""Managing queues, against a real cluster (history, matching, frontend,
PostgreSQL, NATS): pausing and resuming a queue (`cairn queues pause`, `resume`,
`list`; a paused queue dispatches nothing until resumed), and the refusal of bad
QueueService requests (through gRPC, the Client and the command line) with
nothing written.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from flow_helpers import (
    RPC_TIMEOUT,
    RUN_TIMEOUT,
    expect_rpc_error,
    queue_of,
    register_without_polling,
    start_flow_worker,
)
from harness import Cluster, assert_clean, cairn_cli, hold, seconds, wait_for

from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc
from worker_sdk import Client, NotFoundError


def queue_rows(cluster: Cluster) -> list[dict[str, Any]]:
    return [dict(r) for r in cluster.sql("SELECT * FROM queues ORDER BY namespace, name")]


def cli_queues(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """`cairn queues list --json`, by queue name."""
    proc = cairn_cli(cluster, "queues", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {q["name"]: q for q in map(json.loads, proc.stdout.splitlines())}


# ---- pause and resume -----------------------------------------------------------------


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


# ---- bad QueueService requests --------------------------------------------------------


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
