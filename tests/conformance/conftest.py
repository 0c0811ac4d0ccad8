"""Fixtures of the protocol conformance suite: ``node_worker(*tasks)`` starts the
Node.js worker (tests/conformance/node/worker.js) on the test's cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Cluster
from node_helpers import NodeWorker, check_node_installed


@pytest.fixture(scope="session")
def node_installed() -> None:
    check_node_installed()


@pytest.fixture
def node_worker(node_installed: None, cluster: Cluster, tmp_path: Path) -> Callable[..., NodeWorker]:
    """``node_worker(*task_ids, env=None) -> NodeWorker``: a started Node worker
    serving those tasks of worker.js, registered before it returns."""
    gate_dir = tmp_path / "gates"
    gate_dir.mkdir()
    made: list[NodeWorker] = []

    def start(*tasks: str, env: dict[str, str] | None = None) -> NodeWorker:
        worker = NodeWorker(cluster, gate_dir, tasks, f"node-worker-{len(made) + 1}", env)
        made.append(worker)
        worker.start()
        return worker

    return start
