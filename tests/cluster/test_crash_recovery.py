"""Crash recovery with real processes: SIGKILL a worker right after step 2 of a
run is recorded (the run resumes in an attempt on a new worker, detected within
one lease), and SIGKILL history, matching or frontend under load; every run must
still complete, exactly once, with no recorded step run again (DESIGN.md,
"Invariants the tests must prove", 1).

The tasks are in tests/apps/fault_tasks.py; their side effects are read with
fault_helpers.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import (
    APP,
    attempts_of,
    count,
    error_type,
    events,
    fx_env,
    output_of,
    run_status,
    status_counts,
    steps_of,
    wait_all_completed,
)
from harness import Cluster, health_check, wait_for, wait_registered

from cairn import error_types
from worker_sdk import Client

# ---- a worker SIGKILLed right after step 2 is recorded ------------------------


def test_worker_sigkill_after_step_two_resumes_in_new_worker(cluster: Cluster, fx_dir: Path) -> None:
    lease = cluster.lease_seconds
    w1 = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=w1)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-three-steps", {"x": 4}).id

    # Step 3's body has started in w1 (marker) and steps 1 and 2 are recorded.
    wait_for(
        lambda: (
            (fx_dir / f"s3-started-{run_id}-1").exists()
            and [s["position"] for s in steps_of(cluster, run_id)] == [0, 1]
        ),
        10,
        message="step 3 of attempt 1 never started after steps 1 and 2 were recorded",
    )
    assert run_status(cluster, run_id) == "executing"
    w1.kill()
    killed_wall, killed_mono = time.time(), time.monotonic()
    w2 = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    (fx_dir / f"go-s3-{run_id}").touch()  # attempt 1 is dead; attempt 2 may go on at once

    def crashed() -> Any:
        rows = attempts_of(cluster, run_id)
        return rows[0] if rows and rows[0]["status"] != "executing" else None

    first = wait_for(
        crashed, lease + 5, interval=0.02, message="the killed worker's attempt was never marked crashed"
    )
    seen_after = time.monotonic() - killed_mono
    db_after = first["finished_at"].timestamp() - killed_wall
    print(
        f"\ncrash detection: attempt 1 marked {first['status']} {db_after:.3f} s after "
        f"SIGKILL by the database clock ({seen_after:.3f} s until the test saw it); "
        f"lease {lease:g} s"
    )
    assert first["status"] == "crashed"
    assert error_type(first["error"]) == error_types.LEASE_EXPIRED
    assert db_after <= lease + 2, (
        f"crash detected {db_after:.2f} s after the kill; the README "
        f"promises one lease ({lease:g} s) plus well under a second"
    )

    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=15)
    assert run.status == "completed", run
    assert run.output == {"result": 13, "attempt": 2}  # ((4 + 1) * 2) + 3

    atts = attempts_of(cluster, run_id)
    assert [(a["number"], a["status"]) for a in atts] == [(1, "crashed"), (2, "completed")]
    assert atts[1]["worker_id"] != atts[0]["worker_id"], "attempt 2 must run on the new worker"
    assert [(s["position"], s["name"], s["status"], s["attempt"]) for s in steps_of(cluster, run_id)] == [
        (0, "add-one", "completed", 1),
        (1, "double", "completed", 1),
        (2, "add-three", "completed", 2),
    ]

    # Step bodies: 1 and 2 ran once (in attempt 1, never replayed live); step 3
    # started in both attempts but completed once, in attempt 2; the task once.
    assert count(fx_dir, "s1-done", run_id) == 1
    assert count(fx_dir, "s2-done", run_id) == 1
    assert count(fx_dir, "s3-start", run_id, 1) == 1
    assert count(fx_dir, "s3-start", run_id, 2) == 1
    assert count(fx_dir, "s3-done", run_id) == 1
    assert count(fx_dir, "s3-done", run_id, 2) == 1
    assert count(fx_dir, "task-done", run_id) == 1
    pids = {p for e, r, a, p in events(fx_dir) if r == run_id and a == 2}
    assert pids == {w2.pid}


# ---- history / matching / frontend SIGKILLed under load ------------------------

# A longer lease than the harness default: an outage of a service shorter than
# the lease must cost no attempt at all (the SDK retries its writes for a lease),
# so any run with a second attempt shows a lost assignment, not a slow restart.
SERVICE_KILL_LEASE = 6.0


@pytest.mark.parametrize("victim", ["history", "matching", "frontend"])
def test_service_sigkill_under_load_loses_and_duplicates_nothing(
    cluster_factory: Any, fx_dir: Path, victim: str
) -> None:
    c = cluster_factory(lease_seconds=SERVICE_KILL_LEASE)
    workers = [c.start_worker(APP, slots=3, env=fx_env(fx_dir)) for _ in range(2)]
    for w in workers:
        wait_registered(c, worker=w)
    n_runs, delay = 20, 0.4
    with Client(c.address) as client:
        run_ids = [client.trigger("fault-two-steps", {"n": i, "delay": delay}).id for i in range(n_runs)]

    wait_for(
        lambda: status_counts(c, run_ids).get("completed", 0) >= 4,
        20,
        message="the first runs did not complete",
    )
    before = status_counts(c, run_ids)
    offsets = [len(w.log_text()) for w in workers]
    c.kill(victim)
    killed = time.monotonic()
    # Keep it down until it was felt, so the outage overlaps the workers'
    # writes; still well within the lease. A worker feels a frontend's death (a
    # failed heartbeat or poll); history's or matching's only the frontend does,
    # which waits for them within its calls and says NOT_SERVING meanwhile.

    def felt_by() -> list[str]:
        lines = [
            line
            for w, off in zip(workers, offsets)
            for line in w.log_text()[off:].splitlines()
            if "heartbeat failed" in line or "poll failed" in line
        ]
        if victim != "frontend" and not health_check(c.address, timeout=1.0)[0]:
            lines.append(f"frontend NOT_SERVING while {victim} is down")
        return lines

    felt = wait_for(felt_by, 10, interval=0.02, message=f"nothing noticed {victim} was down")
    c.start(victim)
    outage = time.monotonic() - killed
    print(
        f"\n{victim} SIGKILLed with runs {before}; back SERVING after {outage:.2f} s; "
        f"noticed by {felt[0].split(': ', 1)[-1][:120]}"
    )
    assert before.get("completed", 0) < n_runs and before.get("queued", 0) > 0, (
        f"the kill must land while runs are both queued and executing: {before}"
    )

    wait_all_completed(c, run_ids, 30)
    for w in workers:
        assert w.running, f"{w.name} died:\n{w.log_tail(40)}"

    extra_attempts = {}
    for i, run_id in enumerate(run_ids):
        assert output_of(c, run_id) == {"n": i, "value": i * 10 + 1}
        atts = attempts_of(c, run_id)
        completed = [a["number"] for a in atts if a["status"] == "completed"]
        assert len(completed) == 1, f"run {run_id} attempts {[tuple(a) for a in atts]}"
        # The task code never raises, so the only acceptable reason for another
        # attempt is a lost lease (an assignment lost with the killed service).
        for a in atts:
            if a["status"] != "completed":
                assert (a["status"], error_type(a["error"])) == ("crashed", error_types.LEASE_EXPIRED), (
                    f"run {run_id} attempt {a['number']}: {a['status']} {a['error']}"
                )
        if len(atts) > 1:
            extra_attempts[run_id] = len(atts)
        steps = steps_of(c, run_id)
        assert [(s["position"], s["name"], s["status"]) for s in steps] == [
            (0, "first", "completed"),
            (1, "second", "completed"),
        ]
        # No recorded step ran again: its body finished exactly once in the attempt
        # that recorded it, and never in a later attempt.
        for s in steps:
            event = f"{s['name']}-done"
            assert count(fx_dir, event, run_id, s["attempt"]) == 1, (run_id, dict(s))
            later = [a for e, r, a, _ in events(fx_dir) if e == event and r == run_id and a > s["attempt"]]
            assert not later, f"recorded step {s['name']} of run {run_id} ran again: {later}"
        # The run completed exactly once: the task's last line was written once,
        # by the attempt that completed it.
        assert count(fx_dir, "task-done", run_id) == 1, [e for e in events(fx_dir) if e[1] == run_id]
        assert count(fx_dir, "task-done", run_id, completed[0]) == 1
    print(
        f"runs with more than one attempt after killing {victim}: {len(extra_attempts)} "
        f"{sorted(extra_attempts.values())}"
    )
