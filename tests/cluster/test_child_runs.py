"""Child runs and replay correctness with real processes: fan-out/fan-in with
batch_trigger_and_wait, a failing child (caught and uncaught), cancelling a
parent cancels its children, fire-and-forget triggers that a replay does not
repeat, a run killed (SIGKILL of its worker) at every kind of point (after a
step, during a sleep, while its child runs, while it waits for an event), and
two child waits one after the other in one run.

The tasks are in tests/apps/child_tasks.py. Each appends lines to files in a
per-test directory (CHILD_TASKS_DIR), which is how a test counts the times a
step or task body really ran; markers and go-files in the same directory let a
test catch a task at a precise point.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, WorkerProcess, wait_for, wait_registered

from cairn import error_types
from worker_sdk import Client, FailedPreconditionError, NotFoundError, Run

APP = "tests.apps.child_tasks"
RUN_TIMEOUT = 30.0
NON_RETRYABLE_TYPE = "worker_sdk.errors.NonRetryableError"
CHILD_FAILED_TYPE = "worker_sdk.errors.ChildRunFailedError"


# ---- helpers ---------------------------------------------------------------------------


@pytest.fixture
def side_dir(tmp_path: Path) -> Path:
    d = tmp_path / "child-tasks"
    d.mkdir()
    return d


def start_worker(
    cluster: Cluster, side_dir: Path, *, slots: int = 8, env: dict[str, str] | None = None, wait: bool = True
) -> WorkerProcess:
    worker = cluster.start_worker(APP, slots=slots, env={"CHILD_TASKS_DIR": str(side_dir), **(env or {})})
    if wait:
        wait_registered(cluster, worker=worker)
    return worker


def lines(side_dir: Path, name: str) -> list[str]:
    """The lines task code appended to <side_dir>/<name>.log ([] when none)."""
    path = side_dir / f"{name}.log"
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()


def trigger(client: Client, task_id: str, payload: Any = None) -> Run:
    """Triggers a run once a worker has registered the task."""
    return wait_for(
        lambda: client.trigger(task_id, payload or {}),
        timeout=20,
        ignore=(NotFoundError,),
        message=f"task {task_id!r} was never registered by a worker",
    )


def finish(client: Client, run_id: str, timeout: float = RUN_TIMEOUT) -> Run:
    return client.wait(run_id, timeout=timeout)


def children_of(client: Client, run_id: str) -> list[Run]:
    return client.list(parent_run_id=run_id, limit=1000)


def wait_run(
    client: Client, run_id: str, predicate: Callable[[Run], Any], what: str, timeout: float = RUN_TIMEOUT
) -> Run:
    """Until predicate(run) holds; fails at once if the run ends first (unless
    the predicate accepts the ended run)."""

    def check() -> Run | None:
        run = client.get(run_id)
        if predicate(run):
            return run
        if run.done:
            raise AssertionError(f"run {run_id} ended {run.status} ({run.error}) before: {what}")
        return None

    return wait_for(check, timeout, message=f"run {run_id}: {what}")


def waiting_on(kind: str) -> Callable[[Run], bool]:
    return lambda run: run.status == "waiting" and run.wait is not None and run.wait.kind == kind


def steps(run: Run) -> list[tuple[int, str]]:
    return [(s.position, s.name) for s in run.steps]


def attempt_statuses(run: Run) -> list[str]:
    return [a.status for a in run.attempts]


def recorded_steps(cluster: Cluster, run_id: str) -> list[tuple[int, str]]:
    rows = cluster.sql(
        "SELECT position, name FROM steps WHERE run_id = $1 ORDER BY position", uuid.UUID(run_id)
    )
    return [(r["position"], r["name"]) for r in rows]


# ---- 1. fan-out / fan-in -----------------------------------------------------------------


def test_fan_out_fan_in_fifty_children(cluster: Cluster, client: Client, side_dir: Path) -> None:
    n = 50
    start_worker(cluster, side_dir, slots=8)
    started = time.monotonic()
    parent = trigger(client, "fanout-parent", {"n": n})
    run = finish(client, parent.id, timeout=60)
    elapsed = time.monotonic() - started
    print(f"\nfan-out/fan-in of {n} children (8 slots): {elapsed:.2f} s from trigger to parent completed")

    assert run.status == "completed", (run.status, run.error)
    out = run.output
    assert out["outputs"] == [i * i for i in range(n)]  # in payload order
    assert out["statuses"] == ["completed"] * n
    ids = out["run_ids"]
    assert len(set(ids)) == n, ids

    # GetRun: the parent names its 50 children.
    assert len(run.child_run_ids) == n, run.child_run_ids
    assert set(run.child_run_ids) == set(ids)
    # ListRuns(parent_run_id=...): 50, each pointing at the parent, each completed.
    children = children_of(client, parent.id)
    assert len(children) == n, [c.id for c in children]
    assert {c.id for c in children} == set(ids)
    by_id = {c.id: c for c in children}
    for i, child_id in enumerate(ids):
        child = by_id[child_id]
        assert child.parent_run_id == parent.id, child
        assert child.task == "child-square"
        assert child.status == "completed", child
        assert child.input == {"i": i}, child.input  # result i is child i's
        assert child.output == i * i, child.output
    # A GetRun of one child shows its parent too.
    assert client.get(ids[7]).parent_run_id == parent.id

    # The parent ran twice: suspended on the children, then completed.
    assert attempt_statuses(run) == ["suspended", "completed"], run.attempts
    assert run.attempt_count == 2
    assert steps(run) == [(0, "batch_trigger_and_wait:child-square")]
    # Every child body ran exactly once.
    squares = lines(side_dir, "square")
    assert len(squares) == n, squares
    assert sorted(int(line.split()[0]) for line in squares) == list(range(n))
    assert {line.split()[1] for line in squares} == set(ids)


# ---- 2. a failing child ---------------------------------------------------------------------


def test_failing_child_raises_in_parent(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    caught_id = trigger(client, "parent-catches", {"what": "apples"}).id
    uncaught_id = trigger(client, "parent-uncaught", {"what": "pears"}).id

    # (a) the parent catches ChildRunFailedError and returns what it says.
    caught = finish(client, caught_id)
    assert caught.status == "completed", (caught.status, caught.error)
    [child] = children_of(client, caught_id)
    assert child.status == "failed", child
    assert child.parent_run_id == caught_id
    child = client.get(child.id)
    assert child.error is not None and child.error.type == NON_RETRYABLE_TYPE, child.error
    assert attempt_statuses(child) == ["failed"], child.attempts  # non-retryable: once
    out = caught.output
    assert out["caught"] is True, out
    assert out["run_id"] == child.id, out
    assert out["task_id"] == "child-fails", out
    assert out["status"] == "failed", out
    assert out["error_type"] == NON_RETRYABLE_TYPE, out
    assert out["message"] == "child refuses apples", out
    assert child.id in out["text"] and "child refuses apples" in out["text"], out
    assert attempt_statuses(caught) == ["suspended", "completed"], caught.attempts
    assert steps(caught) == [(0, "trigger_and_wait:child-fails")]
    [wait_step] = caught.steps
    assert wait_step.status == "completed", wait_step
    assert wait_step.output[0]["run_id"] == child.id, wait_step

    # (b) uncaught: the parent fails, its error naming the child's failure. Its retry
    # (max_attempts=2) replays the recorded child result: no second child.
    uncaught = finish(client, uncaught_id)
    assert uncaught.status == "failed", uncaught
    [uchild] = children_of(client, uncaught_id)
    assert uchild.status == "failed", uchild
    err = uncaught.error
    assert err is not None
    assert err.type == CHILD_FAILED_TYPE, err
    for part in (uchild.id, "child-fails", "failed", NON_RETRYABLE_TYPE, "child refuses pears"):
        assert part in err.message, (part, err)
    assert "Traceback (most recent call last)" in err.stack_trace, err
    assert attempt_statuses(uncaught) == ["suspended", "failed", "failed"], uncaught.attempts
    for a in uncaught.attempts[1:]:
        assert a.error.type == CHILD_FAILED_TYPE, a
        assert uchild.id in a.error.message, a
    assert len(lines(side_dir, "parent_uncaught_body")) == 3
    assert lines(side_dir, "parent_uncaught_after_child") == []
    # One child body per parent, in all.
    assert len(lines(side_dir, "child_fails")) == 2
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'child-fails'") == 2


# ---- 3. cancelling the parent cancels its children -------------------------------------------


def test_cancel_parent_cancels_children(cluster: Cluster, client: Client, side_dir: Path) -> None:
    n = 5
    worker = start_worker(cluster, side_dir, slots=8)
    parent_id = trigger(client, "cancel-parent", {"n": n}).id

    # Children 0, 2, 4 wait for an event that never comes (waiting, no worker slot);
    # children 1, 3 hold inside a step (executing, heartbeating).
    wait_run(client, parent_id, waiting_on("children"), "waiting on its children")

    def all_blocked() -> dict[int, Run] | None:
        kids = children_of(client, parent_id)
        if len(kids) != n:
            return None
        by_i = {c.input["i"]: c for c in kids}
        for i, c in by_i.items():
            if i % 2 == 0:
                if not waiting_on("event")(client.get(c.id)):
                    return None
            elif c.status != "executing" or not (side_dir / f"blocking-{c.id}").exists():
                return None
        return by_i

    kids = wait_for(all_blocked, RUN_TIMEOUT, message="the 5 children did not all block")
    child_ids = [kids[i].id for i in range(n)]
    step_children = [kids[i].id for i in range(n) if i % 2]
    # The parent's wait names its children in payload order.
    assert client.get(parent_id).wait.child_run_ids == child_ids

    t0 = time.monotonic()
    canceled = client.cancel(parent_id, reason="test cancels the parent")
    assert canceled.status == "canceled", canceled

    def all_canceled() -> bool:
        return all(client.get(c).status == "canceled" for c in child_ids)

    wait_for(all_canceled, 5, message="not every child was canceled within 5 s")
    print(f"\nparent and {n} children canceled {time.monotonic() - t0:.3f} s after CancelRun")

    parent = client.get(parent_id)
    assert parent.status == "canceled", parent
    assert attempt_statuses(parent) == ["suspended"], parent.attempts
    for i, cid in enumerate(child_ids):
        child = client.get(cid)
        assert child.status == "canceled", child
        assert child.parent_run_id == parent_id
        assert child.error is not None and child.error.type == error_types.CANCELED, child.error
        assert parent_id in child.error.message, child.error
        expected = ["canceled"] if i % 2 else ["suspended"]
        assert attempt_statuses(child) == expected, (i, child.attempts)

    # The executing children's attempts are fenced: their next heartbeat is refused and
    # the worker stops them.
    def stopped() -> bool:
        log = worker.log_text()
        return all(f"attempt superseded: run={cid}" in log for cid in step_children)

    wait_for(stopped, 10, message="the worker did not stop the canceled children's attempts")

    # Now let everything go: the go-file, and the events the others wait for. Nothing
    # must come of it.
    (side_dir / "go-blockers").touch()
    for i in range(0, n, 2):
        sent = client.send_event("never-comes", {"late": True}, key=f"k{i}")
        assert sent.delivered_run_ids == [], sent
        with pytest.raises(FailedPreconditionError):
            client.send_event("never-comes", {"late": True}, run_id=child_ids[i], key=f"k{i}")
    # A barrier: a fresh run on the same worker completes, so the worker is alive and
    # would have run anything there was to run.
    probe = finish(client, trigger(client, "child-square", {"i": 3}).id)
    assert probe.status == "completed" and probe.output == 9, probe
    assert worker.running

    for cid in [parent_id, *child_ids]:
        assert client.get(cid).status == "canceled", cid
    assert lines(side_dir, "blocker_done") == []
    assert lines(side_dir, "blocker_step_done") == []
    assert lines(side_dir, "cancel_parent_after_children") == []
    # Each step child started its step body once, and nothing was recorded for it.
    starts = lines(side_dir, "blocker_step_start")
    assert sorted(line.split()[1] for line in starts) == sorted(step_children), starts
    for cid in step_children:
        assert recorded_steps(cluster, cid) == [], cid


# ---- 4. fire and forget ------------------------------------------------------------------------


def test_fire_and_forget_child_not_triggered_again_on_replay(
    cluster: Cluster, client: Client, side_dir: Path
) -> None:
    start_worker(cluster, side_dir)
    parent_id = trigger(client, "ff-parent", {"x": 21}).id
    parent = finish(client, parent_id)

    assert parent.status == "completed", (parent.status, parent.error)
    # Attempt 1 triggered the child and then failed; attempt 2 replayed the trigger.
    assert attempt_statuses(parent) == ["failed", "completed"], parent.attempts
    assert parent.attempts[0].error.type == "RuntimeError"
    handles = lines(side_dir, "ff_parent_handles")
    assert len(handles) == 2 and handles[0] == handles[1], handles
    child_id = parent.output
    assert child_id == handles[0]
    assert steps(parent) == [(0, "trigger:ff-child")]
    assert parent.steps[0].attempt == 1, parent.steps
    assert parent.child_run_ids == [child_id]

    [listed] = children_of(client, parent_id)
    assert listed.id == child_id
    child = finish(client, child_id)
    assert child.status == "completed", child
    assert child.parent_run_id == parent_id
    assert child.output == {"doubled": 42, "parent": parent_id}, child.output
    assert attempt_statuses(child) == ["completed"]
    # Exactly one child run exists, and its body ran once.
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'ff-child'") == 1
    assert lines(side_dir, "ff_child") == [child_id]


# ---- 5. replay correctness under worker kills --------------------------------------------------


@pytest.mark.parametrize("sleep_mode", ["inline", "suspended"])
def test_replay_survives_worker_kill_at_every_point(
    cluster: Cluster, client: Client, side_dir: Path, sleep_mode: str
) -> None:
    """One run of replay-parent (a step, a 1 s sleep, a child, an event, a final step),
    its worker SIGKILLed four times: after the first step is recorded, during the
    sleep, while the child runs, and while the run waits for the event. Inline: the
    sleep runs in place. Suspended (CAIRN_INLINE_WAIT_SECONDS=0): the sleep suspends
    the run, which is waiting when its worker dies."""
    env = {"CAIRN_INLINE_WAIT_SECONDS": "0"} if sleep_mode == "suspended" else {}
    t_start = time.monotonic()
    worker = start_worker(cluster, side_dir, slots=4, env=env)
    run_id = trigger(client, "replay-parent", {"tag": "T", "sleep": 1.0, "x": 7}).id

    # Kill 1: the first step is recorded; the task holds just after it.
    wait_for(
        lambda: (side_dir / "after-first-1").exists(),
        RUN_TIMEOUT,
        message="attempt 1 did not get past the first step",
    )
    assert recorded_steps(cluster, run_id) == [(0, "replay-first")]
    worker.kill()
    (side_dir / "go-after-first").touch()
    worker = start_worker(cluster, side_dir, slots=4, env=env)

    # Kill 2: during the sleep.
    if sleep_mode == "inline":
        wait_for(
            lambda: (1, "wait.sleep") in recorded_steps(cluster, run_id),
            RUN_TIMEOUT,
            message="the sleep was not recorded",
        )
        worker.kill()
        run = client.get(run_id)
        assert run.status == "executing", run  # killed inside the sleep, in place
    else:
        wait_run(client, run_id, waiting_on("sleep"), "suspended on the sleep")
        worker.kill()
        run = client.get(run_id)
        assert attempt_statuses(run) == ["crashed", "suspended"], run.attempts
    # The run had not gone past the sleep.
    assert lines(side_dir, "replay_after_sleep") == []
    assert children_of(client, run_id) == []
    worker = start_worker(cluster, side_dir, slots=4, env=env)

    # Kill 3: while the child runs (its step recorded, holding after it); the parent waits.
    wait_for(lambda: (side_dir / "child-holding-1").exists(), RUN_TIMEOUT, message="the child did not start")
    [child] = children_of(client, run_id)
    assert child.status == "executing", child
    assert recorded_steps(cluster, child.id) == [(0, "replay-child-work")]
    assert waiting_on("children")(client.get(run_id))
    worker.kill()
    (side_dir / "go-child").touch()
    worker = start_worker(cluster, side_dir, slots=4, env=env)

    # Kill 4: while the run waits for the event; the event is sent after the restart.
    wait_run(client, run_id, waiting_on("event"), "waiting for the event")
    worker.kill()
    worker = start_worker(cluster, side_dir, slots=4, env=env)
    event = {"approved_by": "alice", "n": 42}
    sent = client.send_event("approval", event, run_id=run_id)
    assert sent.delivered_run_ids == [run_id] and not sent.buffered, sent

    run = finish(client, run_id)
    elapsed = time.monotonic() - t_start
    print(f"\nreplay run ({sleep_mode} sleep) survived 4 worker kills: {elapsed:.2f} s")
    assert run.status == "completed", (run.status, run.error)
    assert run.output == {"first": "first:T", "child": {"squared": 49}, "event": event}, run.output

    # Attempts: one per worker, each ended the expected way.
    expected = (
        ["crashed", "crashed", "suspended", "suspended", "completed"]
        if sleep_mode == "inline"
        else ["crashed", "suspended", "suspended", "suspended", "completed"]
    )
    assert attempt_statuses(run) == expected, run.attempts
    assert len({a.worker_id for a in run.attempts}) == 5, run.attempts
    assert steps(run) == [
        (0, "replay-first"),
        (1, "wait.sleep"),
        (2, "trigger_and_wait:replay-child"),
        (3, "wait.for_event"),
        (4, "replay-final"),
    ]
    assert all(s.status == "completed" for s in run.steps), run.steps
    assert run.steps[3].output == event

    # Every step body ran exactly once in the run, the child once (one child run).
    assert len(lines(side_dir, "replay_first")) == 1
    assert len(lines(side_dir, "replay_final")) == 1
    assert len(lines(side_dir, "replay_parent_body")) == 5
    # The code after the sleep ran in attempts 3, 4 and 5 only (never in a killed one).
    assert [int(line.split()[1]) for line in lines(side_dir, "replay_after_sleep")] == [3, 4, 5]
    [child] = children_of(client, run_id)
    child = client.get(child.id)
    assert child.status == "completed", child
    assert child.parent_run_id == run_id
    assert attempt_statuses(child) == ["crashed", "completed"], child.attempts
    assert len(lines(side_dir, "replay_child_step")) == 1
    assert len(lines(side_dir, "replay_child_body")) == 2
    assert cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'replay-child'") == 1
    assert cluster.sql_value("SELECT count(*) FROM runs") == 2


# ---- 6. two child waits one after the other ---------------------------------------------------


def test_sequential_child_waits_each_get_their_own_results(
    cluster: Cluster, client: Client, side_dir: Path
) -> None:
    start_worker(cluster, side_dir)
    run_id = trigger(client, "sequential-parent", {"first": [2, 3, 4], "second": 5}).id
    run = finish(client, run_id)

    assert run.status == "completed", (run.status, run.error)
    assert run.output["first"] == [4, 9, 16]
    assert run.output["second"] == 25  # d's result only, not a, b or c's
    assert attempt_statuses(run) == ["suspended", "suspended", "completed"], run.attempts
    assert steps(run) == [(0, "batch_trigger_and_wait:child-square"), (1, "trigger_and_wait:child-square")]
    first_step, second_step = run.steps
    assert [r["output"] for r in first_step.output] == [4, 9, 16]
    assert [r["run_id"] for r in first_step.output] == run.output["first_run_ids"]
    assert len(second_step.output) == 1, second_step.output
    [d] = second_step.output
    assert d["output"] == 25 and d["status"] == "completed", d

    children = {c.id: c for c in children_of(client, run_id)}
    assert len(children) == 4, children
    assert children[d["run_id"]].input == {"i": 5}
    for cid, i in zip(run.output["first_run_ids"], [2, 3, 4]):
        assert children[cid].input == {"i": i}
    rows = cluster.sql(
        "SELECT position, idx, child_run_id FROM child_waits WHERE parent_run_id = $1 ORDER BY position, idx",
        uuid.UUID(run_id),
    )
    assert [(r["position"], r["idx"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert str(rows[3]["child_run_id"]) == d["run_id"]
    assert len(lines(side_dir, "square")) == 4
    assert all(c.status == "completed" for c in children.values())
