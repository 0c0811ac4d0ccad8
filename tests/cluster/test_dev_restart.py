"""`cairn dev` stopped with Ctrl-C (SIGINT) and started again on the same data
directory: a run queued before the stop is still queued after the restart and
then completes, exactly once; a `cairn dev` the test had to kill leaves no
server running. A stop (SIGINT or SIGTERM, with a worker connected) goes in
order, frontend, matching, history, then NATS and PostgreSQL, and logs no error.

The tasks are in tests/apps/fault_tasks.py; their side effects are read with
fault_helpers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from fault_helpers import APP, count, fx_env
from harness import REPO_ROOT, wait_for

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli.embedded import free_port
from worker_sdk import Client, NotFoundError

# ---- `cairn dev` stopped with Ctrl-C and started again on the same data --------


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DevProcess:
    """`python -m cairn_cli dev ...` with its output in a file."""

    def __init__(self, data_dir: Path, ports: dict[str, int], log_path: Path) -> None:
        self.args = [
            sys.executable,
            "-m",
            "cairn_cli",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(ports["frontend"]),
            "--history-port",
            str(ports["history"]),
            "--matching-port",
            str(ports["matching"]),
            "--postgres-port",
            str(ports["postgres"]),
            "--nats-port",
            str(ports["nats"]),
            *[
                f"--{flag}={free_port()}"
                for flag in ("http-port", "history-metrics-port", "matching-metrics-port")
            ],
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self._offset = log.tell()
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=str(REPO_ROOT),
                start_new_session=True,  # its own process group, as in a terminal of its own
            )

    def output(self) -> str:
        return self.log_path.read_bytes()[self._offset :].decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"cairn dev exited with {self.proc.returncode}:\n{self.output()}")
            return "cairn dev: ready" in self.output()

        wait_for(ready, timeout, interval=0.1, message="cairn dev never printed its ready line")

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C in its terminal: SIGINT to its whole process group (what it
        started in that group gets it too; PostgreSQL would stop at once)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    # Outside pytest's 0700 tmp tree, which the postgres OS user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="cairn-test-dev-"))
    try:
        yield root
    finally:
        if not os.environ.get("CAIRN_TEST_KEEP_DATA"):
            shutil.rmtree(root, ignore_errors=True)


def _start_dev_worker(address: str, fx: Path, log_path: Path, data: Path) -> subprocess.Popen[bytes]:
    # The worker finds cairn dev's admin key in its data directory.
    env = {**_child_env(), **fx_env(fx), "CAIRN_DEV_DIR": str(data)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cairn_cli", "worker", APP, "--address", address, "--slots", "2"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO_ROOT),
        )


def test_cairn_dev_restart_keeps_a_queued_run(dev_dir: Path, fx_dir: Path, tmp_path: Path) -> None:
    data = dev_dir / "data"
    ports = {k: free_port() for k in ("frontend", "history", "matching", "postgres", "nats")}
    address = f"127.0.0.1:{ports['frontend']}"
    dev_log, worker_log = tmp_path / "cairn-dev.log", tmp_path / "worker.log"
    dev = DevProcess(data, ports, dev_log)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.monotonic()
        dev.start()
        dev.wait_ready()
        first_start = time.monotonic() - t0
        for sub in ("postgres", "nats", "logs"):
            assert (data / sub).is_dir(), f"{data} has no {sub}/: {os.listdir(data)}"
        credential = _check_internal_credential(data, ports)
        _check_postgres_password(data, ports, dev.output())

        # Register the task with a worker, then stop it, so the run waits queued.
        with Client(address, api_key=_admin_key(data)) as client:
            with pytest.raises(NotFoundError):
                client.trigger("fault-echo", {"hello": "early"})
            workers.append(_start_dev_worker(address, fx_dir, worker_log, data))
            wait_for(
                lambda: "worker registered" in worker_log.read_text(errors="replace"),
                20,
                message="the worker did not register with cairn dev",
            )
            workers[-1].send_signal(signal.SIGTERM)
            assert workers[-1].wait(20) == 0
            run_id = client.trigger("fault-echo", {"hello": "dev"}).id
            assert client.get(run_id).status == "queued"

        offsets = _log_offsets(data)
        code = dev.interrupt()
        assert code == 0, f"cairn dev exited with {code} on SIGINT:\n{dev.output()}"
        assert "cairn dev: stopped" in dev.output()
        _assert_clean_stop(data, offsets, dev.output())
        for sub in ("postgres", "nats", "logs"):
            assert (data / sub).is_dir()
        assert count(fx_dir, "echo", run_id) == 0

        t0 = time.monotonic()
        dev.start()
        dev.wait_ready()
        second_start = time.monotonic() - t0
        assert _check_internal_credential(data, ports) == credential, "a restart made a new credential"
        with Client(address, api_key=_admin_key(data)) as client:
            assert client.get(run_id).status == "queued"
            workers.append(_start_dev_worker(address, fx_dir, worker_log, data))
            run = client.wait(run_id, timeout=20)
        assert run.status == "completed", run
        assert run.output == {"echo": {"hello": "dev"}}
        assert count(fx_dir, "echo", run_id) == 1
        assert (data / "logs" / "history.log").exists()
        print(f"\ncairn dev ready after {first_start:.1f} s (fresh data dir), {second_start:.1f} s (restart)")
        workers[-1].send_signal(signal.SIGTERM)
        workers[-1].wait(20)
        assert dev.interrupt() == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        dev.kill()
        # A cairn dev that was killed leaves its servers running; stop them by
        # their pid files (only servers this test started, on its data dir).
        _stop_leftover_servers(data, ports)


def test_cairn_dev_stops_in_order_and_cleanly_with_a_worker_connected(
    dev_dir: Path, fx_dir: Path, tmp_path: Path
) -> None:
    data = dev_dir / "data"
    ports = {k: free_port() for k in ("frontend", "history", "matching", "postgres", "nats")}
    address = f"127.0.0.1:{ports['frontend']}"
    dev = DevProcess(data, ports, tmp_path / "cairn-dev.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        dev.start()
        dev.wait_ready()
        worker_log = tmp_path / "worker.log"
        worker = _start_dev_worker(address, fx_dir, worker_log, data)
        with Client(address, api_key=_admin_key(data)) as client:
            wait_for(
                lambda: "worker registered" in worker_log.read_text(errors="replace"),
                20,
                message="the worker did not register with cairn dev",
            )
            run_id = client.trigger("fault-echo", {"hello": "stop"}).id
            assert client.wait(run_id, timeout=20).status == "completed"
        # The worker stays connected, a poll open, as cairn dev stops under it.
        offsets = _log_offsets(data)
        assert dev.proc is not None
        dev.proc.send_signal(signal.SIGTERM)
        assert dev.proc.wait(60) == 0, dev.output()
        _assert_clean_stop(data, offsets, dev.output())
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        dev.kill()
        _stop_leftover_servers(data, ports)


def _log_offsets(data: Path) -> dict[str, int]:
    """Where each service's and PostgreSQL's log ends now (they grow across starts)."""
    logs = data / "logs"
    return {name: (logs / f"{name}.log").stat().st_size for name in (*DEV_SERVICES, "postgres")}


DEV_SERVICES = ("frontend", "matching", "history")  # the order cairn dev stops them in


def _assert_clean_stop(data: Path, offsets: dict[str, int], output: str) -> None:
    """Since the offsets: each service drained and stopped, one after the other
    in DEV_SERVICES' order, logging no error or traceback; PostgreSQL was still up
    for them (no session of theirs cut by its shutdown)."""
    assert "cairn dev: stopped" in output, output
    assert "Traceback" not in output and "did not stop" not in output, output
    text = {}
    for name, offset in offsets.items():
        with open(data / "logs" / f"{name}.log", "rb") as f:
            f.seek(offset)
            text[name] = f.read().decode(errors="replace")
    stopped_at = []
    for name in DEV_SERVICES:
        log = text[name]
        for bad in ("Traceback", " ERROR ", "CRITICAL", "CannotConnectNow"):
            assert bad not in log, f"{name}'s log has {bad!r}:\n{log}"
        lines = [line for line in log.splitlines() if "stopped in" in line]
        assert lines, f"{name} did not say it stopped:\n{log}"
        stopped_at.append((lines[-1][:23], name))
    times = [t for t, _ in stopped_at]
    assert times == sorted(times), f"not stopped in the order {DEV_SERVICES}: {stopped_at}"
    assert "terminating connection due to administrator command" not in text["postgres"], text["postgres"]


def _admin_key(data: Path) -> str:
    """The admin key cairn dev made at its first start (not the session's)."""
    return (data / "admin.key").read_text().strip()


def _check_internal_credential(data: Path, ports: dict[str, int]) -> str:
    """cairn dev's internal credential: kept in its data dir readable by its
    owner only, handed to the services in their environment (never in argv,
    where ps shows it); history and matching listen on loopback and refuse a
    call without it. Returns it."""
    path = data / "internal_credential"
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    credential = path.read_text().strip()
    assert len(credential) >= 32
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes()
            if b"cairn_cli" in argv:
                assert credential.encode() not in argv, argv
    calls = {
        "history": lambda ch: hgrpc.HistoryServiceStub(ch).ListRuns(rpb.ListRunsRequest(), timeout=10),
        "matching": lambda ch: mgrpc.MatchingServiceStub(ch).ListWorkers(
            qpb.ListWorkersRequest(), timeout=10
        ),
    }
    for name, call in calls.items():
        with grpc.insecure_channel(f"127.0.0.1:{ports[name]}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                call(channel)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, refused.value)
    return credential


def _check_postgres_password(data: Path, ports: dict[str, int], output: str) -> None:
    """cairn dev's PostgreSQL needs the password it keeps in its data dir (0600):
    refused without it, not shown in the ready line nor in any argv."""
    path = data / "postgres_password"
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    password = path.read_text().strip()
    assert len(password) >= 32
    assert password not in output, "cairn dev printed the database password"
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            assert password.encode() not in (entry / "cmdline").read_bytes()

    async def connect(url: str) -> Any:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetchval("SELECT count(*) FROM runs")
        finally:
            await conn.close()

    address = f"127.0.0.1:{ports['postgres']}/cairn"
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as refused:
        asyncio.run(connect(f"postgresql://postgres@{address}"))
    assert "password" in str(refused.value), refused.value
    assert asyncio.run(connect(f"postgresql://postgres:{password}@{address}")) >= 0


def _stop_leftover_servers(data: Path, ports: dict[str, int]) -> None:
    """Kills what a killed `cairn dev` of this test may have left running: its
    PostgreSQL and NATS (found by their pid files on this test's data dir) and its
    services (found by their --listen address on this test's ports)."""
    pids = []
    listens = [f"127.0.0.1:{ports[k]}".encode() for k in ("frontend", "history", "matching")]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cairn_cli" in argv and any(a in argv for a in listens):
            pids.append(int(entry.name))
    pg_pid = data / "postgres" / "postmaster.pid"
    if pg_pid.exists():
        try:
            pids.append(int(pg_pid.read_text().splitlines()[0]))
        except (OSError, ValueError, IndexError):
            pass
    nats_pid = data / "logs" / "nats.pid"
    if nats_pid.exists():
        try:
            pids.append(int(nats_pid.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(data).encode() in cmd or b"cairn_cli" in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
