"""Workers that serve only some queues (`cairn worker --queue`), against a real
cluster (history, matching, frontend, PostgreSQL, NATS): a worker of queue q-a
registers and runs only that queue's task and never takes a run of queue q-b,
which a worker of q-b then runs.

Task code lives in tests/apps/flow_tasks.py; workers run it with cwd=tests/apps,
so it imports as `flow_tasks` (flow_helpers.py starts them).
"""

from __future__ import annotations

import uuid

from flow_helpers import RUN_TIMEOUT, register_without_polling, start_flow_worker
from harness import Cluster, hold

from worker_sdk import Client

# ---- workers that serve some queues ---------------------------------------------------


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
