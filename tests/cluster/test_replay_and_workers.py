"""Replaying a run and listing workers against a real cluster, through the CLI
and the HTTP API: a replay is a new run of the same task and payload linked by
replay_of; the workers list shows the connected worker; refusals write nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import start_basic_worker
from harness import Cluster, auth, cairn_cli, wait_for
from harness.database import table_counts

from cairn_cli.embedded import free_port

RUN_TIMEOUT = 30


@pytest.fixture
def http_cluster(cluster_factory: Any) -> tuple[Cluster, httpx.Client]:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    with httpx.Client(headers=auth.headers(), base_url=f"http://{address}", timeout=30) as client:
        yield cluster, client


def completed(http: httpx.Client, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = http.get(f"/v1/runs/{run_id}").json()["run"]
        return run if run["status"] == "completed" else None

    result: dict[str, Any] = wait_for(done, RUN_TIMEOUT, message=f"run {run_id} did not complete")
    return result


def test_replay_and_workers_through_the_cli_and_http(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    start_basic_worker(cluster)
    first = http.post("/v1/runs", json={"task_id": "echo", "payload": {"n": 1}, "options": {"tags": ["a"]}})
    assert first.status_code == 200, first.text
    original = completed(http, first.json()["run"]["id"])

    replayed = http.post(f"/v1/runs/{original['id']}/replay")
    assert replayed.status_code == 200, replayed.text
    copy = completed(http, replayed.json()["run"]["id"])
    assert copy["id"] != original["id"] and copy["replay_of"] == original["id"]
    assert (copy["task"], copy["input"], copy["output"], copy["tags"]) == ("echo", {"n": 1}, {"n": 1}, ["a"])

    proc = cairn_cli(cluster, "runs", "replay", original["id"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["replay_of"] == original["id"]

    listed = http.get("/v1/workers").json()["workers"]
    mine = [w for w in listed if w["connected"] and "echo" in w["task_ids"]]
    assert mine, listed
    proc = cairn_cli(cluster, "workers", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["worker_id"] for r in rows} == {w["worker_id"] for w in listed}


def test_workers_show_their_slots_in_use(http_cluster: tuple[Cluster, httpx.Client], tmp_path: Path) -> None:
    cluster, http = http_cluster
    start_basic_worker(cluster, slots=4)
    release = tmp_path / "release"
    payload = {"counter": str(tmp_path / "counter"), "release": str(release)}
    held = http.post("/v1/runs", json={"task_id": "gated", "payload": payload}).json()["run"]["id"]

    def running() -> int:
        (worker,) = http.get("/v1/workers").json()["workers"]
        assert worker["slots"] == 4
        return int(worker["running"])

    wait_for(lambda: running() == 1, 20, message="the worker never showed its attempt running")
    release.touch()
    completed(http, held)
    assert running() == 0


def test_a_refused_replay_writes_nothing(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    before = table_counts(cluster)
    unknown = http.post(f"/v1/runs/{uuid.uuid4()}/replay")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND", unknown.text
    bad = http.post("/v1/runs/not-a-run/replay")
    assert bad.status_code == 400 and "run_id" in bad.json()["message"], bad.text
    proc = cairn_cli(cluster, "runs", "replay", str(uuid.uuid4()))
    assert proc.returncode != 0 and "not found" in proc.stderr and "Traceback" not in proc.stderr
    assert table_counts(cluster) == before
