"""What the trigger-option and schedule tests share (test_trigger_options.py,
test_schedules.py): starting a worker of tests/apps/option_tasks.py (run with
cwd=tests/apps, so it imports as `option_tasks`), registering tasks over gRPC
with no worker polling for them, and the timeouts they wait with."""

from __future__ import annotations

from harness import TESTS_DIR, Cluster, WorkerProcess, wait_registered

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc

APPS_DIR = TESTS_DIR / "apps"
TASKS_MODULE = "option_tasks"
ALL_TASKS = (
    "opt-echo",
    "opt-record",
    "opt-gated",
    "opt-stuck",
    "opt-stuck-declared",
    "opt-metadata",
    "opt-scheduled",
)
JSON = "json/plain"
RPC_TIMEOUT = 15.0
RUN_TIMEOUT = 20.0


def start_option_worker(
    cluster: Cluster, *, slots: int = 4, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A `cairn worker option_tasks` process; returns once its tasks are registered
    and the worker logged its registration."""
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, slots=slots, env=env)
    wait_registered(cluster, *ALL_TASKS, worker=worker)
    return worker


def register_over_grpc(cluster: Cluster, worker_id: str, *task_ids: str) -> None:
    """Registers tasks the way any worker does, without ever polling for them."""
    worker_service_pb2_grpc.WorkerServiceStub(cluster.channel()).RegisterWorker(
        wpb.RegisterWorkerRequest(
            worker_id=worker_id,
            version="test-1",
            slots=1,
            tasks=[wpb.TaskDefinition(task_id=t, retry=cpb.RetryPolicy(max_attempts=1)) for t in task_ids],
        ),
        timeout=RPC_TIMEOUT,
    )
