"""Several replicas of every service, against a real cluster (history,
matching, frontend, PostgreSQL, NATS): a second history, matching and frontend
beside the first, a worker and a Client given both frontends, and frontend 1
SIGKILLed under load: every run still completes, exactly once.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them).
"""

from __future__ import annotations

import time

from flow_helpers import RUN_TIMEOUT, count_status, start_flow_worker
from harness import Cluster, wait_for, worker_alive

from worker_sdk import Client, UnavailableError

# ---- replicas -------------------------------------------------------------------------


def test_two_of_each_service_and_a_frontend_killed(cluster: Cluster) -> None:
    """history-2, matching-2 (talking to history-2) and frontend-2 (talking to
    matching-2 and history-2) beside the first three; a worker and a Client get
    both frontends as "a,b". The harness wires a replica to the history in
    cluster.env["CAIRN_HISTORY_ADDRESS"], so that is pointed at history-2 while
    the replicas are added. After frontend 1 is SIGKILLed, TriggerRun (which the
    SDK does not retry, see cairn/addresses.py RETRYABLE_METHODS) is retried here
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
