"""Restarts no client notices (issue 15), the services' side: history
SIGKILLed and a trigger sent at once through the frontend: the frontend waits
for history to be back and sends it then (services/frontend/backend.py), so
the trigger succeeds and makes exactly one run, with an idempotency key and
without one (a call is never sent before history can be reached); a history
that stays down is UNAVAILABLE naming it and why, not "cannot reach the
frontend".

The tasks are in tests/apps/fault_tasks.py; their side effects are read with
fault_helpers.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fault_helpers import APP, count, fx_env
from harness import Cluster, wait_registered

from worker_sdk import Client, UnavailableError

# ---- history killed, a trigger at once -------------------------------------------


def test_history_killed_and_a_trigger_at_once_makes_one_run(cluster: Cluster, fx_dir: Path) -> None:
    worker = cluster.start_worker(APP, slots=2, env=fx_env(fx_dir))
    wait_registered(cluster, worker=worker)
    with Client(cluster.address) as client:
        for keyed in (True, False):
            cluster.kill("history")
            restart = threading.Thread(target=cluster.start, args=("history",))
            restart.start()
            try:
                t0 = time.monotonic()
                key = f"restart-{keyed}" if keyed else None
                run = client.trigger("fault-echo", {"keyed": keyed}, idempotency_key=key)
                took = time.monotonic() - t0
            finally:
                restart.join()
            print(f"\ntrigger (idempotency key: {keyed}) answered {took:.2f} s after history was killed")
            done = client.wait(run.id, timeout=30)
            assert done.status == "completed", done
            assert done.output == {"echo": {"keyed": keyed}}
            # exactly one run for this trigger: the runs of the task so far, one per trigger
            made = cluster.sql_value("SELECT count(*) FROM runs WHERE task_id = 'fault-echo'")
            assert made == (1 if keyed else 2), made
            assert count(fx_dir, "echo", run.id) == 1
    assert worker.running


def test_a_history_that_stays_down_is_named(cluster: Cluster) -> None:
    cluster.kill("history")
    # A call's deadline bounds both the frontend's wait for history and the
    # client's sending again (30 s each by default): 3 s is enough to be told.
    with Client(cluster.address, rpc_timeout=3) as client, pytest.raises(UnavailableError) as down:
        client.get("00000000-0000-0000-0000-000000000001")
    message = str(down.value)
    history = cluster.history_address
    assert f"history service at {history} is unavailable: nothing listens on {history}" in message, message
    assert "frontend" not in message, message
