"""A cluster restart does not waste live work (issue 15): the whole cluster
stopped for longer than the lease while a worker keeps its attempt running and
retrying heartbeats; the time no history ran does not count against the lease
(services/history/liveness.py), so the attempt's finish is accepted and its
step is not done again. And fencing unchanged: with two history replicas, a
lease that expires while one of them runs is expired by it, and the other,
restarted, grants no grace.

The tasks are in tests/apps/fault_tasks.py; their side effects are read with
fault_helpers.py."""

from __future__ import annotations

import time
from pathlib import Path

from fault_helpers import APP, attempts_of, count, error_type, fx_env, output_of, run_status
from harness import Cluster, hold, wait_for, wait_registered

from cairn import error_types
from worker_sdk import Client

# ---- the whole cluster stopped for longer than the lease --------------------------


def test_a_cluster_stopped_longer_than_the_lease_keeps_a_live_attempt(cluster: Cluster, fx_dir: Path) -> None:
    lease = cluster.lease_seconds
    worker = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=worker)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-fenced", {"tag": "restart"}).id
    wait_for(lambda: (fx_dir / f"held-{run_id}").exists(), 10, message="the attempt never reached its step")
    offset = len(worker.log_text())
    stopped = time.monotonic()
    for name in ("frontend", "matching", "history"):  # as `cairn dev` stops
        assert cluster.stop(name) == 0, cluster.services[name].log_tail(20)
    wait_for(
        lambda: "heartbeat failed" in worker.log_text()[offset:],
        10,
        message="the worker never tried to heartbeat while the cluster was down",
    )

    def worker_keeps_its_attempt() -> None:
        assert worker.running, worker.log_tail(20)
        assert "superseded" not in worker.log_text()[offset:], worker.log_tail(20)

    hold(worker_keeps_its_attempt, 2 * lease + 1 - (time.monotonic() - stopped), "the worker gave up")
    history_log = len(cluster.services["history"].log_text())
    cluster.launch()
    down = time.monotonic() - stopped
    print(f"\ncluster down {down:.1f} s with a {lease:g} s lease")
    assert down > 2 * lease

    (fx_dir / f"go-hold-{run_id}").touch()
    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=30)
    assert run.status == "completed", run
    attempts = attempts_of(cluster, run_id)
    assert [(a["number"], a["status"]) for a in attempts] == [(1, "completed")], [tuple(a) for a in attempts]
    assert count(fx_dir, "hold-start", run_id) == 1  # the step was not done again
    assert output_of(cluster, run_id)["pid"] == worker.pid
    granted = cluster.services["history"].log_text()[history_log:]
    assert "no history replica ran since" in granted and "1 lease(s)" in granted, granted


# ---- two history replicas: a running one expires leases, fencing unchanged -------


def test_a_lease_that_expired_while_a_history_replica_ran_stays_expired(
    cluster: Cluster, fx_dir: Path
) -> None:
    lease = cluster.lease_seconds
    cluster.add_replica("history")  # not the frontend's or matching's: it only runs timers
    a = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=a)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-fenced", {"tag": "replicas"}).id
    wait_for(lambda: (fx_dir / f"held-{run_id}").exists(), 10, message="attempt 1 never reached its step")
    assert cluster.stop("history") == 0
    a.pause()  # no heartbeat from here on; history-2 runs all along
    wait_for(
        lambda: [x["status"] for x in attempts_of(cluster, run_id)] == ["crashed"],
        lease + 10,
        message="history-2 never expired the lease while history was down",
    )
    assert error_type(attempts_of(cluster, run_id)[0]["error"]) == error_types.LEASE_EXPIRED
    history_log = len(cluster.services["history"].log_text())
    cluster.start("history")
    b = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=lease + 20)
    assert run.status == "completed", run
    assert output_of(cluster, run_id)["pid"] == b.pid
    # The restarted replica granted nothing: history-2 was running.
    assert "no history replica ran" not in cluster.services["history"].log_text()[history_log:]
    a.resume()
    (fx_dir / f"go-hold-{run_id}").touch()
    wait_for(
        lambda: any(w in a.log_text() for w in ("discarded", "refused")),
        15,
        message="A never gave up its stale attempt",
    )
    assert [(x["number"], x["status"]) for x in attempts_of(cluster, run_id)] == [
        (1, "crashed"),
        (2, "completed"),
    ]
    assert count(fx_dir, "task-done", run_id, 1) == 0
    assert run_status(cluster, run_id) == "completed"
