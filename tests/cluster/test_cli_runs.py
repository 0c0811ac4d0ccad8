"""The `cairn` command line's runs, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): `cairn trigger` (with --wait
and --json), `cairn runs list` and `cairn runs get`, and its errors (one line,
no stack trace, nothing written).

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks` (api_helpers.py starts them).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from api_helpers import start_basic_worker
from harness import REPO_ROOT, Cluster, cli_env


def cairn_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )


# ---- the command line -------------------------------------------------------------------


def test_cli_trigger_list_get_and_errors(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    address = ["--address", cluster.address]

    proc = cairn_cli("trigger", "three-steps", "--payload", '{"x": 1}', "--wait", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert {"id", "task", "status", "output", "error", "attempts", "steps"} <= set(run)
    assert run["task"] == "three-steps"
    assert run["status"] == "completed"
    assert run["output"] == {"sum": 11, "product": 22, "text": "sum=11 product=22"}
    assert run["error"] is None
    assert len(run["attempts"]) == 1 and run["attempts"][0]["status"] == "completed"
    assert [(s["name"], s["status"], s["attempt"]) for s in run["steps"]] == [
        ("add", "completed", 1),
        ("multiply", "completed", 1),
        ("describe", "completed", 1),
    ]

    proc = cairn_cli("trigger", "echo", "--payload", '{"hi": 1}', "--wait", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    echo = json.loads(proc.stdout)
    assert echo["status"] == "completed" and echo["output"] == {"hi": 1}

    proc = cairn_cli("runs", "list", "--json", *address)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    listed = [json.loads(line) for line in lines]
    assert [r["id"] for r in listed] == [echo["id"], run["id"]]
    assert all(isinstance(r, dict) and r["status"] == "completed" for r in listed)
    proc = cairn_cli("runs", "list", "--json", "--task", "three-steps", *address)
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [run["id"]]

    proc = cairn_cli("runs", "get", run["id"], *address)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert run["id"] in text and "completed" in text
    for name in ("add", "multiply", "describe"):
        assert name in text, text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)

    runs_before = cluster.sql_value("SELECT count(*) FROM runs")
    proc = cairn_cli("trigger", "unknown-task", *address)
    assert proc.returncode != 0
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1, proc.stderr
    assert "unknown-task" in err_lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""

    proc = cairn_cli("trigger", "echo", "--payload", "{bad", *address)
    assert proc.returncode != 0
    assert "--payload" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert cluster.sql_value("SELECT count(*) FROM runs") == runs_before
