"""What the public API tests share (test_python_client.py,
test_grpcurl_protocol.py, test_idempotency.py, test_api_validation.py,
test_poll_max_attempts.py, test_cancel.py, test_cli_runs.py): starting a worker
of tests/apps/basic_tasks.py (run with cwd=tests/apps, so it imports as
`basic_tasks`), registering tasks over the WorkerService with no worker polling
for them, and reading a task's side-effect file."""

from __future__ import annotations

from pathlib import Path

from harness import TESTS_DIR, Cluster, WorkerProcess, wait_registered

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc

APPS_DIR = TESTS_DIR / "apps"
TASKS_MODULE = "basic_tasks"
JSON = "json/plain"
RPC_TIMEOUT = 15.0


def start_basic_worker(
    cluster: Cluster, *, slots: int = 4, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A `cairn worker basic_tasks` process; returns once its tasks are registered."""
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, slots=slots, env=env)
    wait_registered(cluster, "three-steps", "echo", "counted", "gated", worker=worker)
    return worker


def register(wstub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str, *task_ids: str) -> None:
    wstub.RegisterWorker(
        wpb.RegisterWorkerRequest(
            worker_id=worker_id,
            version="test-1",
            slots=1,
            tasks=[wpb.TaskDefinition(task_id=t, retry=cpb.RetryPolicy(max_attempts=1)) for t in task_ids],
        ),
        timeout=RPC_TIMEOUT,
    )


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
