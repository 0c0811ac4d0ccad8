"""A worker stopped with SIGTERM mid-run (issue 15): it stops polling at once,
lets the step it is running finish and record, hands the attempt back
(FinishAttempt RELEASED) instead of starting the next step, and exits 0; the
run goes on at once on another worker from the next step, long before the
lease (30 s here) could have expired: every step ran exactly once, the first
attempt is "released" and the run's retries are untouched.

Tasks in tests/apps/rolling_tasks.py; their step log is read with
rolling_helpers.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import Cluster, wait_for, wait_registered
from rolling_helpers import APP, TASK, done_by_step, lines, rolling_env

from worker_sdk import Client

STEPS, STEP_MS = 4, 1500


@pytest.mark.cluster_options(lease_seconds=30)
def test_a_worker_stopped_mid_run_hands_it_back_and_it_completes_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    first = cluster.start_worker(APP, slots=1, env=rolling_env(tmp_path))
    wait_registered(cluster, TASK, worker=first)
    with Client(cluster.address) as client:
        run_id = client.trigger(TASK, {"steps": STEPS, "ms": STEP_MS}).id

        def at_step_1() -> bool:
            return any(e.run_id == run_id and e.position == 1 for e in lines(tmp_path, "start"))

        wait_for(at_step_1, 20, interval=0.05, message="the first worker never started step 1")
        second = cluster.start_worker(APP, slots=1, env=rolling_env(tmp_path))
        wait_registered(cluster, worker=second)
        stopped = time.monotonic()
        code = first.stop(timeout=20)
        took = time.monotonic() - stopped
        assert code == 0, f"the worker exited {code}:\n{first.log_tail(40)}"
        assert took < 10, f"the worker took {took:.1f} s to stop (its grace is 10 s)"
        done = client.wait(run_id, timeout=20)
        completed_after = time.monotonic() - stopped
    print(f"\nworker stopped in {took:.1f} s; the run completed {completed_after:.1f} s after the SIGTERM")
    assert done.status == "completed", done
    assert done.output == {"total": sum(range(STEPS))}
    assert completed_after < cluster.lease_seconds, "the run waited for the released attempt's lease"
    executions = done_by_step(tmp_path)
    assert sorted(p for r, p in executions if r == run_id) == list(range(STEPS))
    assert all(len(e) == 1 for e in executions.values()), f"a step ran twice: {dict(executions)}"
    by_pid = {p: executions[(run_id, p)][0].pid for p in range(STEPS)}
    assert by_pid[0] == by_pid[1] == first.pid, "steps 0 and 1 on the stopped worker"
    assert by_pid[2] == by_pid[3] == second.pid, "steps 2 and 3 on the other worker"
    assert [(a.number, a.status) for a in done.attempts] == [(1, "released"), (2, "completed")]
    assert cluster.sql_value("SELECT failure_count FROM runs WHERE id = $1::uuid", run_id) == 0
    log = first.log_text()
    assert "attempt released: run=" in log and "worker stopped" in log, log
    assert "Traceback" not in log, log
