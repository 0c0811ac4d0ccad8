"""Metrics against a real cluster (history, matching, frontend, PostgreSQL,
NATS): each service's /metrics (history's and matching's on --metrics-address,
the frontend's on its HTTP port) passes `promtool check metrics` and counts the
runs that flowed; a real Prometheus server scrapes all three, and its query API
shows cairn_runs_completed_total rising as more runs complete.

promtool and prometheus come from Debian's `prometheus` package (scripts/venv.sh
installs it when it can); without them those parts skip, saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import start_basic_worker
from harness import Cluster, wait_for

from cairn_cli.embedded import free_port
from worker_sdk import Client

SCRAPE_INTERVAL = "500ms"


def _get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body: bytes = r.read()
        return body.decode()


def _frontend_serves_http() -> bool:
    """Whether this tree's frontend has the HTTP port (its /metrics lives there)."""
    done = subprocess.run(
        [sys.executable, "-m", "cairn_cli", "frontend", "--help"], capture_output=True, timeout=60
    )
    return b"--http-address" in done.stdout


@pytest.fixture
def metered(cluster_factory: Any) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """A cluster whose services serve /metrics; with each /metrics URL by job name."""
    cluster: Cluster = cluster_factory(start=False)
    urls: dict[str, str] = {}
    for name in ("history", "matching"):
        address = f"127.0.0.1:{free_port()}"
        cluster.services[name].args += ["--metrics-address", address]
        urls[name] = f"http://{address}/metrics"
    if _frontend_serves_http():
        address = f"127.0.0.1:{free_port()}"
        cluster.services["frontend"].args += ["--http-address", address]
        urls["frontend"] = f"http://{address}/metrics"
    cluster.launch()
    yield cluster, urls


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, number = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(number)
    return total


def _run_echoes(client: Client, n: int) -> None:
    runs = [client.trigger("echo", {"i": i}) for i in range(n)]
    for run in runs:
        assert client.wait(run.id, timeout=30).status == "completed"


def test_services_export_their_metrics(metered: tuple[Cluster, dict[str, str]]) -> None:
    cluster, urls = metered
    start_basic_worker(cluster)
    with Client(address=cluster.address) as client:
        _run_echoes(client, 3)

    def history_counted() -> str | None:
        text = _get(urls["history"])
        return text if _sample(text, "cairn_runs_completed_total", task="echo") >= 3 else None

    history = wait_for(history_counted, 20, message="history's /metrics never counted the 3 completed runs")
    assert _sample(history, "cairn_runs_triggered_total", task="echo") == 3
    assert _sample(history, "cairn_runs_started_total", task="echo") == 3
    assert _sample(history, "cairn_dispatch_latency_seconds_count") >= 3
    assert _sample(history, "cairn_group_commit_batch_size_count", operation="start") >= 1
    assert _sample(history, "cairn_db_transaction_seconds_count", operation="start") >= 1
    assert _sample(history, "cairn_nats_connected") == 1
    assert (
        _sample(
            history,
            "cairn_grpc_server_handled_total",
            grpc_method="ClaimAttempts",
            grpc_code="OK",
        )
        >= 1
    )

    matching = _get(urls["matching"])
    assert "# TYPE cairn_queue_depth gauge" in matching
    assert "# TYPE cairn_queue_executing gauge" in matching
    assert _sample(matching, "cairn_grpc_server_handled_total", grpc_method="PollAttempt") >= 1
    if "frontend" in urls:
        frontend = _get(urls["frontend"])
        assert (
            _sample(frontend, "cairn_grpc_server_handled_total", grpc_method="TriggerRun", grpc_code="OK")
            >= 3
        )

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's prometheus package; scripts/venv.sh installs it)")
    for job, url in urls.items():
        done = subprocess.run([promtool, "check", "metrics"], input=_get(url).encode(), capture_output=True)
        assert done.returncode == 0, f"{job}: {done.stdout.decode()}{done.stderr.decode()}"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    body = json.loads(_get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"))
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _completed(base: str) -> float:
    result = _query(base, 'sum(cairn_runs_completed_total{job="history",task="echo"})')
    return float(result[0]["value"][1]) if result else -1.0


def test_prometheus_scrapes_every_service(metered: tuple[Cluster, dict[str, str]], tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian's prometheus package; scripts/venv.sh installs it)")
    cluster, urls = metered
    scrape = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": urllib.parse.urlsplit(url).path,
                "static_configs": [{"targets": [urllib.parse.urlsplit(url).netloc]}],
            }
            for job, url in urls.items()
        ],
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps(scrape))  # JSON is YAML
    web = f"127.0.0.1:{free_port()}"
    base = f"http://{web}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def all_up() -> bool:
            targets = json.loads(_get(f"{base}/api/v1/targets"))["data"]["activeTargets"]
            return {t["labels"]["job"] for t in targets if t["health"] == "up"} == set(urls)

        wait_for(all_up, 60, 0.2, "Prometheus never scraped every service", ignore=(OSError,))
        start_basic_worker(cluster)
        with Client(address=cluster.address) as client:
            _run_echoes(client, 2)
            first = wait_for(lambda: _completed(base) >= 2 and _completed(base), 30, 0.2, "no completed runs")
            _run_echoes(client, 3)
            wait_for(
                lambda: _completed(base) >= first + 3,
                30,
                0.2,
                f"cairn_runs_completed_total did not rise from {first} by 3",
            )
        up = _query(base, "up")
        assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} == set(urls)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
