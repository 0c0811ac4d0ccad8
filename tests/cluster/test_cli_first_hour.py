"""A new user's first hour with the `cairn` command (issue 12), against a real
cluster and a worker serving examples.orders: `--version`; `trigger --wait
--timeout 1s` on a run that goes on (one line, exit 1); `--payload @file` and
`--payload -` with a payload too large for a command line, and one over the size
limit refused on one line with nothing written; `runs list --json` without the
attempts and steps it did not load; `runs get` with event details as JSON
objects, times, durations and a step's failed try's error whole; a message
for each kind of bad or unreachable address, given in seconds when no frontend
answers (no `cairn dev`); and `cairn worker` waiting for a frontend that is not
up yet."""

from __future__ import annotations

import http.server
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from harness import REPO_ROOT, Cluster, cli_env, wait_registered


def cairn(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_the_first_hour(cluster: Cluster, tmp_path: Path) -> None:
    worker = cluster.start_worker("examples.orders")
    wait_registered(cluster, "process-order", "ship-order", worker=worker)
    at = ["--address", cluster.address]

    assert cairn("--version").stdout.strip() == f"cairn {metadata.version('cairn')}"

    # --wait --timeout as a duration: the run goes on, one line, exit 1.
    proc = cairn(
        "trigger",
        "ship-order",
        "--payload",
        '{"order_id": "S-1", "step_seconds": 5}',
        "--wait",
        "--timeout",
        "1s",
        *at,
    )
    line = one_error_line(proc, 1)
    assert "did not finish within 1s" in line and "cairn runs get" in line

    # --payload @file and - with 1 MB of JSON (a command-line argument holds 128 KiB).
    order = {"order_id": "F-1", "amount": 5, "note": "n" * (1024 * 1024)}
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order))
    from_file = cairn("trigger", "process-order", "--payload", f"@{path}", "--wait", "--json", *at)
    assert from_file.returncode == 0, from_file.stderr
    run = json.loads(from_file.stdout)
    assert run["status"] == "completed" and run["input"] == order
    from_stdin = cairn(
        "trigger",
        "process-order",
        "--payload",
        "-",
        "--wait",
        "--json",
        *at,
        stdin=json.dumps({**order, "order_id": "F-2"}),
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["output"]["order"] == "F-2"

    runs_before = cluster.sql_value("SELECT count(*) FROM runs")
    too_big = cairn(
        "trigger", "process-order", "--payload", "-", *at, stdin=json.dumps("x" * (10 * 1024 * 1024))
    )
    assert "exceeds the limit of 4194304 bytes" in one_error_line(too_big, 2)
    missing = cairn("trigger", "process-order", "--payload", f"@{tmp_path / 'nope.json'}", *at)
    assert "no such file" in one_error_line(missing, 2)
    assert cluster.sql_value("SELECT count(*) FROM runs") == runs_before

    # runs list --json: no attempts or steps it did not load.
    listed = [json.loads(x) for x in cairn("runs", "list", "--json", *at).stdout.splitlines()]
    assert len(listed) == 3 and {r["id"] for r in listed} >= {run["id"]}
    for r in listed:
        assert not {"attempts", "steps", "events"} & set(r), r.keys()
        assert r["created_at"]

    # runs get --json: event details are objects; text: times, durations, whole errors.
    got = json.loads(cairn("runs", "get", run["id"], "--json", *at).stdout)
    assert got["events"] and all(isinstance(e["details"], dict) for e in got["events"])
    assert [s["tries"] for s in got["steps"]] == [1, 2, 1]
    text = cairn("runs", "get", run["id"], *at).stdout
    for label in ("created  ", "started  ", "finished ", "(took ", "RECORDED", "TOOK"):
        assert label in text, text
    assert (
        "step 1 charge_card, try 1: ConnectionError: payment gateway timed out (simulated, first try only)"
        in (" ".join(text.split()))
    )
    full = cairn("runs", "get", run["id"], "--full", *at).stdout
    assert "Traceback (most recent call last)" in full and "charge_card" in full


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http1() -> Iterator[str]:
    """The address of an HTTP/1.1 server: something that listens but is not a
    Cairn frontend (as a frontend's HTTP port would be)."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_each_bad_address_says_what_is_wrong(http1: str) -> None:
    """Each mistaken address, one line each: the syntax ones at once (exit 2),
    the unreachable ones after the first-contact wait (a couple of seconds, not
    the 30 s a restart is waited out for)."""
    port = free_port()
    cases = {
        "http://127.0.0.1:7373": (2, "is a URL: Cairn speaks gRPC, not HTTP"),
        "127.0.0.1:99999": (2, "the port must be a number from 1 to 65535, not '99999'"),
        "127.0.0.1": (2, "has no port: write host:port, e.g. 127.0.0.1:7373"),
        "no-such-host.invalid:7373": (1, "the host 'no-such-host.invalid' is unknown"),
        f"127.0.0.1:{port}": (1, f"nothing listens on 127.0.0.1:{port} (connection refused)"),
        http1: (1, f"{http1} is not a Cairn frontend: it accepted a connection but did not answer over gRPC"),
    }
    seen = set()
    for address, (code, message) in cases.items():
        line = one_error_line(cairn("runs", "list", "--address", address), code)
        assert message in line, (address, line)
        seen.add(line)
        worker = cairn("worker", "examples.orders", "--address", address, timeout=10) if code == 2 else None
        if worker is not None:
            assert message in one_error_line(worker, 1)
    assert len(seen) == len(cases)


def test_a_command_where_nothing_listens_fails_within_seconds() -> None:
    """No `cairn dev` running: the command says so in seconds, not after 30 s."""
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    line = one_error_line(cairn("runs", "list", "--address", address, timeout=60), 1)
    took = time.monotonic() - started
    assert line.startswith(f"error: cannot reach the Cairn frontend at {address}: nothing listens on "), line
    assert "(connection refused); is `cairn dev` running?" in line, line
    assert took < 15, took


def read_lines(stream: Any, into: queue.Queue[str]) -> None:
    """Puts each line of stream into `into`, until it ends."""
    for line in stream:
        into.put(line)


def test_cairn_worker_keeps_waiting_for_its_frontend() -> None:
    """A worker started before the cluster waits for it: against a port where
    nothing listens it logs that it retries, and is still running after a
    command against the same port has given up."""
    address = f"127.0.0.1:{free_port()}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "cairn_cli", "worker", "examples.orders", "--address", address],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(worker.stderr, lines), daemon=True).start()
    try:
        line, deadline = "", time.monotonic() + 30
        while f"cannot register with {address}" not in line:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the worker did not say within 30 s that it waits for its frontend")
        assert "retrying until it answers" in line, line
        assert "nothing listens" in one_error_line(cairn("runs", "list", "--address", address), 1)
        assert worker.poll() is None, "the worker gave up"
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
