"""Retention of finished runs (services/history/retention.py), with real
processes: history prunes runs that finished longer ago than
CAIRN_RETENTION_DAYS, with every row of theirs, every CAIRN_PRUNE_SECONDS.

Runs are made old by moving their finished_at back in the test's database (the
retention here is a day), except in the test of a tiny retention, where time
does it. "Kept" is shown by the same pass that deleted the old runs: a pass
looks at every finished run, so what it left is what it keeps. Every test also
reads history's log for a failed pass, which the pruner logs and survives.

Tasks: tests/apps/retention_tasks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import REPO_ROOT, Cluster, wait_for

from services.history.retention import FAILURE_MESSAGE
from worker_sdk import Client, NotFoundError, Run

APP = "tests.apps.retention_tasks"
DIR_ENV = "RETENTION_TASKS_DIR"
PRUNE_SECONDS = "0.2"
TIMEOUT = 10.0
PRUNED_LOG = "retention: pruned"

# Every table with rows of a run, and how its rows name the run (migrations 0001-0003).
RUN_TABLES: dict[str, str] = {
    "runs": "id = $1",
    "steps": "run_id = $1",
    "attempts": "run_id = $1",
    "run_events": "run_id = $1",
    "timers": "run_id = $1",
    "waits": "run_id = $1",
    "child_waits": "parent_run_id = $1 OR child_run_id = $1",
    "run_inbox": "run_id = $1",
    "queue_entries": "run_id = $1",
    "wait_tokens": "run_id = $1",
}


# ---- helpers ------------------------------------------------------------------------


def settings(retention_days: str, prune_seconds: str = PRUNE_SECONDS) -> dict[str, str]:
    return {"CAIRN_RETENTION_DAYS": retention_days, "CAIRN_PRUNE_SECONDS": prune_seconds}


@pytest.fixture
def side_dir(tmp_path: Path) -> Path:
    d = tmp_path / "retention"
    d.mkdir()
    return d


def start(
    cluster_factory: Callable[..., Cluster], side_dir: Path, retention_days: str
) -> tuple[Cluster, Client]:
    """A cluster with the retention and a fast prune interval, and a worker."""
    cluster = cluster_factory(env=settings(retention_days))
    cluster.start_worker(APP, env={DIR_ENV: str(side_dir)})
    return cluster, Client(address=cluster.address)


def trigger(client: Client, task_id: str, payload: Any = None, **options: Any) -> Run:
    """Triggers once the worker has registered the task."""
    return wait_for(
        lambda: client.trigger(task_id, payload or {}, **options),
        timeout=TIMEOUT,
        ignore=(NotFoundError,),
        message=f"task {task_id!r} never registered",
    )


def status_is(client: Client, run_id: str, status: str) -> Run:
    return wait_for(
        lambda: (r := client.get(run_id)).status == status and r,
        timeout=TIMEOUT,
        message=f"run {run_id} never became {status}",
    )


def rows_of(cluster: Cluster, run_id: str) -> dict[str, int]:
    """How many rows of the run each table holds."""
    rid = uuid.UUID(run_id)
    return {
        t: cluster.sql_value(f"SELECT count(*) FROM {t} WHERE {where}", rid)
        for t, where in RUN_TABLES.items()
    }


def gone(client: Client, run_id: str) -> bool:
    try:
        client.get(run_id)
    except NotFoundError:
        return True
    return False


def make_old(cluster: Cluster, *run_ids: str) -> None:
    """Moves the runs' finished_at two days back (past a one-day retention)."""
    cluster.sql(
        "UPDATE runs SET finished_at = now() - interval '2 days' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(r) for r in run_ids],
    )


def history_log(cluster: Cluster) -> str:
    return cluster.services["history"].log_text()


def assert_no_failed_pass(cluster: Cluster) -> None:
    assert FAILURE_MESSAGE not in history_log(cluster), history_log(cluster)[-3000:]


def holds_for(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Checks predicate all along `seconds` (the opposite of wait_for)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.05)


# ---- tests --------------------------------------------------------------------------


def test_old_finished_runs_are_pruned_with_all_their_rows(cluster_factory, side_dir):
    """Completed, failed and parent-and-children runs finished two days ago are
    gone from GetRun and from every table, stray timer/queue/wait rows included;
    a run finished just now, and unfinished runs a year old (queued, delayed,
    executing, waiting, a parent waiting on a child that finished "long ago")
    keep every row. Then the pruned run's idempotency key makes a new run, and
    the waiting parent still gets its old child's result."""
    cluster, client = start(cluster_factory, side_dir, "1")
    with client:
        # A completed run with a buffered event (run_inbox) and a token (wait_tokens).
        old = trigger(client, "ret-steps", {"hold": True}, idempotency_key="order-1")
        wait_for(lambda: (side_dir / f"held-{old.id}").exists(), TIMEOUT, message="never held")
        assert client.send_event("never", run_id=old.id)
        (side_dir / f"go-{old.id}").touch()
        failed = trigger(client, "ret-fail")
        parent = trigger(client, "ret-parent", {"children": [False, False]})
        recent = trigger(client, "ret-steps")
        for run in (old, failed, parent, recent):
            assert client.wait(run.id, timeout=TIMEOUT).status in ("completed", "failed")
        children = client.get(parent.id).child_run_ids
        assert len(children) == 2

        # Unfinished runs, of every kind.
        waiting = trigger(client, "ret-event")
        delayed = trigger(client, "ret-steps", delay=3600)
        wait_for(lambda: client.pause_queue("ret-paused"), TIMEOUT, ignore=(NotFoundError,))
        queued = trigger(client, "ret-paused")
        executing = trigger(client, "ret-steps", {"hold": True})
        waiting_parent = trigger(client, "ret-parent", {"children": [False, True]})
        status_is(client, waiting.id, "waiting")
        wait_for(lambda: (side_dir / f"held-{executing.id}").exists(), TIMEOUT, message="never held")
        status_is(client, waiting_parent.id, "waiting")
        done_child, waiting_child = client.get(waiting_parent.id).child_run_ids
        status_is(client, done_child, "completed")
        status_is(client, waiting_child, "waiting")
        assert client.get(delayed.id).status == "delayed"
        assert client.get(queued.id).status == "queued"

        # Rows a finished run should not have, but that a pass must not leave behind.
        rid = uuid.UUID(old.id)
        cluster.sql(
            "INSERT INTO timers (run_id, kind, attempt, due_at) "
            "VALUES ($1, 'signal', 0, now() + interval '1 year')",
            rid,
        )
        cluster.sql(
            "INSERT INTO queue_entries (run_id, namespace, task_id, queue, available_at) "
            "SELECT id, namespace, task_id, queue, now() + interval '1 year' FROM runs "
            "WHERE id = $1",
            rid,
        )
        cluster.sql(
            "INSERT INTO waits (run_id, namespace, kind, position, name) "
            "VALUES ($1, 'default', 'sleep', 99, 'stray')",
            rid,
        )
        before = {**rows_of(cluster, old.id), "child_waits": rows_of(cluster, parent.id)["child_waits"]}
        assert all(before.values()), f"every table should hold rows of the old runs: {before}"

        pruned = [old.id, failed.id, parent.id, *children]
        kept = [
            recent.id,
            waiting.id,
            delayed.id,
            queued.id,
            executing.id,
            waiting_parent.id,
            done_child,
            waiting_child,
        ]
        kept_rows = {r: rows_of(cluster, r) for r in kept}
        cluster.sql(
            "UPDATE runs SET created_at = created_at - interval '365 days', "
            "updated_at = updated_at - interval '365 days' WHERE finished_at IS NULL"
        )
        make_old(cluster, *pruned, done_child)

        wait_for(
            lambda: all(gone(client, r) for r in pruned), TIMEOUT, message="old finished runs were not pruned"
        )
        for r in pruned:
            assert not any(rows_of(cluster, r).values()), (r, rows_of(cluster, r))
        for r in kept:
            assert rows_of(cluster, r) == kept_rows[r], r
        assert client.get(done_child).status == "completed"
        assert PRUNED_LOG in history_log(cluster)

        again = client.trigger("ret-steps", {}, idempotency_key="order-1")
        assert again.id != old.id
        assert client.wait(again.id, timeout=TIMEOUT).status == "completed"

        client.send_event("go", "late", run_id=waiting_child, key=waiting_child)
        finished = client.wait(waiting_parent.id, timeout=TIMEOUT)
        assert finished.status == "completed" and finished.output == ["child done", "late"]
    assert_no_failed_pass(cluster)


def test_tiny_retention_prunes_finished_runs_as_they_age(cluster_factory, side_dir):
    """CAIRN_RETENTION_DAYS=0.00002 (1.7 s): a completed run stays that long,
    then goes by itself; a waiting run a year old stays."""
    cluster, client = start(cluster_factory, side_dir, "0.00002")
    with client:
        waiting = trigger(client, "ret-event")
        status_is(client, waiting.id, "waiting")
        cluster.sql(
            "UPDATE runs SET created_at = now() - interval '1 year' WHERE id = $1", uuid.UUID(waiting.id)
        )
        run = trigger(client, "ret-steps")
        assert client.wait(run.id, timeout=TIMEOUT).status == "completed"
        done_at = time.monotonic()
        wait_for(lambda: gone(client, run.id), TIMEOUT, message="the run was never pruned")
        assert time.monotonic() - done_at > 1.2, "pruned before its retention"
        assert not any(rows_of(cluster, run.id).values())
        assert client.get(waiting.id).status == "waiting"
    assert_no_failed_pass(cluster)


def test_retention_zero_keeps_finished_runs(cluster_factory, side_dir):
    """CAIRN_RETENTION_DAYS=0: a run finished ten years ago is kept (watched over
    ten prune intervals), and history says retention is off."""
    cluster = cluster_factory(env=settings("0", "0.1"))
    cluster.start_worker(APP, env={DIR_ENV: str(side_dir)})
    with Client(address=cluster.address) as client:
        run = trigger(client, "ret-steps")
        assert client.wait(run.id, timeout=TIMEOUT).status == "completed"
        rows = rows_of(cluster, run.id)
        cluster.sql(
            "UPDATE runs SET finished_at = now() - interval '10 years' WHERE id = $1", uuid.UUID(run.id)
        )
        assert "retention: off" in history_log(cluster)
        holds_for(lambda: rows_of(cluster, run.id) == rows, 1.0, "retention 0 pruned a run")
        assert client.get(run.id).status == "completed"
    assert PRUNED_LOG not in history_log(cluster)
    assert_no_failed_pass(cluster)


def test_failed_pass_is_logged_and_the_next_one_prunes(cluster_factory, side_dir):
    """A pass that fails (a table it deletes from is missing) is logged with its
    error, history keeps serving, and a later pass prunes once it can."""
    cluster, client = start(cluster_factory, side_dir, "1")
    with client:
        run = trigger(client, "ret-steps")
        assert client.wait(run.id, timeout=TIMEOUT).status == "completed"
        cluster.sql("ALTER TABLE run_inbox RENAME TO run_inbox_away")
        try:
            make_old(cluster, run.id)
            wait_for(
                lambda: FAILURE_MESSAGE in history_log(cluster),
                TIMEOUT,
                message="the failed pass was not logged",
            )
            assert "run_inbox" in history_log(cluster)
            assert client.get(run.id).status == "completed"  # rolled back whole
        finally:
            cluster.sql("ALTER TABLE run_inbox_away RENAME TO run_inbox")
        wait_for(lambda: gone(client, run.id), TIMEOUT, message="never pruned after the failure")
        assert not any(rows_of(cluster, run.id).values())


@pytest.mark.parametrize(
    "args, env, flag",
    [
        (["--retention-days", "-1"], {}, "--retention-days"),
        ([], {"CAIRN_RETENTION_DAYS": "-0.5"}, "--retention-days"),
        ([], {"CAIRN_RETENTION_DAYS": "thirty"}, "--retention-days"),
        (["--prune-seconds", "0"], {}, "--prune-seconds"),
    ],
)
def test_bad_retention_settings_fail_at_start(args, env, flag):
    """A negative or non-numeric retention, or a prune interval that is not
    positive, stops history at start with a message naming the flag."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    child_env.update(env, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "cairn_cli", "history", *args],
        env=child_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert f"argument {flag}: must be a number" in done.stderr, done.stderr
