"""The cluster test harness: real service processes against real PostgreSQL and NATS.

Fixtures (defined in tests/conftest.py):

- ``postgres_server`` (session): ONE PostgreSQL for the whole session; an
  ``EmbeddedPostgres`` in a temporary directory, or ``ExternalPostgres`` when
  ``CAIRN_DATABASE_URL`` names an existing server (each test gets its own
  database on it either way).
- ``nats`` (session): ONE NATS for the session (``EmbeddedNats``, or
  ``ExternalNats`` when ``CAIRN_NATS_URL`` is set). ``nats.kill()`` /
  ``nats.start()`` restart it on the same port, but that disturbs every other
  test running against it; prefer ``private_nats``.
- ``private_nats`` (function): an ``EmbeddedNats`` of this test only.
- ``private_postgres`` (function): an ``EmbeddedPostgres`` of this test only
  (costs an initdb, about 0.5 s), for tests that kill or restart PostgreSQL.
- ``cluster_factory`` (function): ``cluster_factory(**options) -> Cluster``;
  every call makes a new database, a new NATS subject prefix and starts
  history, matching and frontend (unless ``start=False``). Options:
  ``lease_seconds=3``, ``sweep_seconds=1``, ``nats=None`` (an EmbeddedNats such
  as ``private_nats``, or a URL; default the session NATS), ``postgres=None``
  (``private_postgres`` or a server URL; default the session server),
  ``env={}`` (extra CAIRN_* or other variables for every child process),
  ``start=True``, ``timeout=30``.
- ``cluster`` (function): ``cluster_factory()`` with defaults, or with the
  options of ``@pytest.mark.cluster_options(lease_seconds=10, ...)`` on the
  test, or of an indirect parameter
  (``@pytest.mark.parametrize("cluster", [{"lease_seconds": 10}], indirect=True)``).

At teardown every process a cluster started is killed (SIGKILL); databases are
left in place. When a test fails, the last 80 lines of every process log of
its clusters are attached to the failure report ("cluster logs" section).

Tests wait for state with ``wait_for(predicate, timeout)``, never with a bare
``time.sleep``.

Helpers the test files share (at the end of this module): ``worker_alive``,
``wait_registered`` (tasks in the ``tasks`` table, a worker polling),
``table_counts`` (rows per table, to show a refused request wrote nothing),
``assert_clean`` (an error message without a stack trace), ``grpcurl``,
``grpcurl_call``, ``grpcurl_error`` and ``json_field`` (grpcurl as a client),
``json_payload`` and ``b64_json``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cairn_cli.embedded import _run_coro, create_database, database_url_for, free_port

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_ROOT / "tests"
PYTHON = sys.executable
SERVICES = ("history", "matching", "frontend")
DEFAULT_LEASE_SECONDS = 3.0
DEFAULT_SWEEP_SECONDS = 1.0
READY_TIMEOUT = 30.0
LOG_TAIL_LINES = 80
# How `cairn worker` is told its code version (also set as CAIRN_WORKER_VERSION).
WORKER_VERSION_FLAG = "--version"


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls predicate every `interval` seconds until it returns something truthy,
    and returns that. At the deadline raises AssertionError with `message` and the
    last value. Exceptions of the types in `ignore` count as a falsy result (and
    are reported as the last value); any other exception propagates at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = predicate()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{message or 'condition not met'} (waited {timeout:g} s; last value: {last!r})"
            )
        time.sleep(interval)


def _tail(text: str, lines: int) -> str:
    out = text.splitlines()[-lines:]
    return "\n".join(out)


def _base_env(extra_pythonpath: Iterable[Path] = ()) -> dict[str, str]:
    """The environment of every child: ours without CAIRN_* (a developer's shell
    must not leak into a test), unbuffered, with the repo root importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    paths = [str(p) for p in extra_pythonpath] + [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ManagedProcess:
    """A child process of the harness with its output appended to a log file.
    The same object can be started again (same command, env and port)."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(
                f"=== {time.strftime('%H:%M:%S')} harness: starting {self.name}: "
                f"{' '.join(self.args)}\n".encode()
            )
            log.flush()
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=str(self.cwd),
                close_fds=True,
            )

    @property
    def pid(self) -> int | None:
        """The PID of the current (or last) process; None if never started."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def _note(self, what: str) -> None:
        with contextlib.suppress(OSError), open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} harness: {what}\n".encode())

    def kill(self) -> None:
        """SIGKILL (a crash), then wait for the process to be gone."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
            self._note(f"killed {self.name} (SIGKILL)")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL after `timeout` seconds.
        Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a paused process cannot exit
                self.process.terminate()
            try:
                self.process.wait(timeout)
                self._note(f"{self.name} stopped (SIGTERM), exit code {self.process.returncode}")
            except subprocess.TimeoutExpired:
                self._note(f"{self.name} ignored SIGTERM for {timeout:g} s; SIGKILL")
                self.kill()
        return self.process.returncode

    def pause(self) -> None:
        """SIGSTOP: the process freezes (no heartbeats), as in a long GC pause or a
        suspended VM."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        """Everything this process (and its earlier runs) wrote."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_text(), lines)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"


class ServiceProcess(ManagedProcess):
    """One of history, matching or frontend (or a replica of one), on a fixed port."""

    def __init__(
        self, name: str, kind: str, port: int, args: list[str], env: dict[str, str], log_path: Path
    ) -> None:
        super().__init__(name, args, env, log_path)
        self.kind = kind
        self.port = port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class WorkerProcess(ManagedProcess):
    """A `cairn worker MODULE` process."""

    def __init__(
        self, name: str, module: str, args: list[str], env: dict[str, str], log_path: Path, cwd: Path
    ) -> None:
        super().__init__(name, args, env, log_path, cwd)
        self.module = module


def _health_check(address: str, timeout: float) -> tuple[bool, str]:
    """(serving, detail) of grpc.health.v1.Health/Check with service "". A fresh
    channel each time, so no reconnect backoff from an earlier refusal applies."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    )
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def wait_serving(
    services: Iterable[ServiceProcess], timeout: float = READY_TIMEOUT, interval: float = 0.05
) -> None:
    """Waits until every service answers its health check with SERVING. Fails at
    once, with its log, when one exits; at the deadline names each laggard."""
    pending = {s.name: s for s in services}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for name, svc in list(pending.items()):
            if not svc.running:
                raise RuntimeError(
                    f"{name} exited with code {svc.returncode} while starting; "
                    f"last lines of {svc.log_path}:\n{svc.log_tail(40)}"
                )
            ok, detail = _health_check(svc.address, timeout=1.0)
            last[name] = detail
            if ok:
                del pending[name]
        if not pending:
            return
        if time.monotonic() >= deadline:
            parts = [
                f"{name} on {svc.address} (last health check: {last.get(name)}); "
                f"last lines of {svc.log_path}:\n{svc.log_tail(40)}"
                for name, svc in pending.items()
            ]
            raise RuntimeError(f"not SERVING within {timeout:g} s: " + "\n".join(parts))
        time.sleep(interval)


class ExternalPostgres:
    """A PostgreSQL server the harness did not start (CAIRN_DATABASE_URL); it can
    create databases on it but not stop or kill it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_database(self, name: str) -> str:
        return create_database(self.url, name)

    @property
    def running(self) -> bool:
        return True

    def start(self, timeout: float = 30) -> str:
        return self.url

    def _refuse(self) -> None:
        import pytest

        pytest.skip(
            "CAIRN_DATABASE_URL names an external PostgreSQL; this test must "
            "stop it (use the private_postgres fixture)"
        )

    stop = kill = lambda self, *a, **k: self._refuse()  # noqa: E731


class ExternalNats:
    """A NATS server the harness did not start (CAIRN_NATS_URL)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def running(self) -> bool:
        return True

    def start(self, timeout: float = 10) -> str:
        return self.url

    def _refuse(self) -> None:
        import pytest

        pytest.skip(
            "CAIRN_NATS_URL names an external NATS; this test must stop it (use the private_nats fixture)"
        )

    stop = kill = lambda self, *a, **k: self._refuse()  # noqa: E731


class Cluster:
    """history + matching + frontend as processes on one fresh database.

    Attributes: ``address`` (frontend host:port), ``history_address``,
    ``matching_address``, ``database_url``, ``nats_url``, ``nats_prefix``,
    ``env`` (the CAIRN_* settings every child gets, incl. CAIRN_ADDRESS),
    ``services`` (name -> ServiceProcess), ``workers``, ``log_dir``.
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        database_url: str,
        nats_url: str,
        nats_prefix: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
        env: Mapping[str, str] | None = None,
        extra_logs: Iterable[Path] = (),
    ) -> None:
        self.log_dir = log_dir
        self.database_url = database_url
        self.nats_url = nats_url
        self.nats_prefix = nats_prefix or "t" + secrets.token_hex(4)
        self.lease_seconds = lease_seconds
        self.sweep_seconds = sweep_seconds
        self.extra_logs = list(extra_logs)
        ports = {kind: free_port() for kind in SERVICES}
        self.env: dict[str, str] = {
            "CAIRN_ADDRESS": f"127.0.0.1:{ports['frontend']}",
            "CAIRN_HISTORY_ADDRESS": f"127.0.0.1:{ports['history']}",
            "CAIRN_MATCHING_ADDRESS": f"127.0.0.1:{ports['matching']}",
            "CAIRN_DATABASE_URL": database_url,
            "CAIRN_NATS_URL": nats_url,
            "CAIRN_NATS_PREFIX": self.nats_prefix,
            "CAIRN_LEASE_SECONDS": f"{lease_seconds:g}",
            "CAIRN_SWEEP_SECONDS": f"{sweep_seconds:g}",
        }
        self.env.update(env or {})
        self.services: dict[str, ServiceProcess] = {}
        self.workers: list[WorkerProcess] = []
        self._channels: list[Any] = []
        for kind in SERVICES:
            self._add_service(kind, kind, ports[kind])

    # ---- addresses ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The frontend's host:port (what apps and workers dial)."""
        return self.services["frontend"].address

    @property
    def history_address(self) -> str:
        return self.services["history"].address

    @property
    def matching_address(self) -> str:
        return self.services["matching"].address

    # ---- services ------------------------------------------------------------------

    def _service_args(self, kind: str, port: int, matching: str | None) -> list[str]:
        listen = f"127.0.0.1:{port}"
        base = [PYTHON, "-m", "cairn_cli", kind, "--listen", listen]
        history = self.env["CAIRN_HISTORY_ADDRESS"]
        if kind == "history":
            return base + ["--database-url", self.database_url, "--nats-url", self.nats_url]
        if kind == "matching":
            return base + [
                "--database-url",
                self.database_url,
                "--nats-url",
                self.nats_url,
                "--history-address",
                history,
            ]
        if kind == "frontend":
            return base + [
                "--history-address",
                history,
                "--matching-address",
                matching or self.env["CAIRN_MATCHING_ADDRESS"],
                "--nats-url",
                self.nats_url,
            ]
        raise ValueError(f"unknown service kind {kind!r}; expected one of {', '.join(SERVICES)}")

    def _add_service(self, name: str, kind: str, port: int, matching: str | None = None) -> ServiceProcess:
        env = {**_base_env(), **self.env}
        svc = ServiceProcess(
            name, kind, port, self._service_args(kind, port, matching), env, self.log_dir / f"{name}.log"
        )
        self.services[name] = svc
        return svc

    def _get(self, name: str) -> ServiceProcess:
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(f"no service {name!r}; have {', '.join(self.services)}") from None

    def _start_service(self, svc: ServiceProcess) -> None:
        # The environment is taken at each start, so a test may change
        # cluster.env (say CAIRN_LEASE_SECONDS) and restart a service with it.
        svc.env = {**_base_env(), **self.env}
        svc.start()

    def launch(self, timeout: float = READY_TIMEOUT) -> Cluster:
        """Starts every service that is not running, all at once, and waits until
        each is SERVING."""
        todo = [s for s in self.services.values() if not s.running]
        for svc in todo:
            self._start_service(svc)
        wait_serving(todo, timeout)
        return self

    def start(self, name: str, timeout: float = READY_TIMEOUT) -> ServiceProcess:
        """Starts service `name` again (same port, same arguments, the current
        cluster.env) and waits until it is SERVING."""
        svc = self._get(name)
        self._start_service(svc)
        wait_serving([svc], timeout)
        return svc

    def stop(self, name: str, timeout: float = 15) -> int | None:
        """SIGTERM to service `name` and wait for it to exit; returns its exit code."""
        return self._get(name).stop(timeout)

    def kill(self, name: str) -> None:
        """SIGKILL to service `name`, and wait until it is gone."""
        self._get(name).kill()

    def restart(self, name: str, timeout: float = READY_TIMEOUT) -> ServiceProcess:
        """stop(name) (graceful) then start(name). For a crash: kill(name), start(name)."""
        self.stop(name)
        return self.start(name, timeout)

    def add_replica(
        self, kind: str, *, matching: str | None = None, start: bool = True, timeout: float = READY_TIMEOUT
    ) -> ServiceProcess:
        """Another process of `kind` on a new port, same database and NATS; named
        "<kind>-2", "<kind>-3", ... A frontend replica talks to the service named by
        `matching` (default "matching"). Returns it, started unless start=False."""
        n = 2
        while f"{kind}-{n}" in self.services:
            n += 1
        matching_address = self._get(matching).address if matching else None
        svc = self._add_service(f"{kind}-{n}", kind, free_port(), matching_address)
        if start:
            self.start(svc.name, timeout)
        return svc

    # ---- workers -------------------------------------------------------------------

    def start_worker(
        self,
        module: str,
        *,
        slots: int = 4,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        version: str | None = None,
        args: Iterable[str] = (),
        address: str | None = None,
    ) -> WorkerProcess:
        """Runs `python -m cairn_cli worker MODULE --address ADDR --slots N` with the
        cluster env; PYTHONPATH holds `cwd` (if given) and the repo root, so task
        modules under tests/apps/ import as "tests.apps.x" (or "apps.x" with
        cwd=TESTS_DIR). Returns at once; the worker connects on its own."""
        work_dir = Path(cwd) if cwd is not None else REPO_ROOT
        name = f"worker-{len(self.workers) + 1}"
        argv = [
            PYTHON,
            "-m",
            "cairn_cli",
            "worker",
            module,
            "--address",
            address or self.address,
            "--slots",
            str(slots),
        ]
        child_env = {**_base_env([work_dir] if cwd is not None else []), **self.env}
        if version is not None:
            argv += [WORKER_VERSION_FLAG, version]
            child_env["CAIRN_WORKER_VERSION"] = version
        argv += list(args)
        child_env.update(env or {})
        worker = WorkerProcess(name, module, argv, child_env, self.log_dir / f"{name}.log", work_dir)
        worker.start()
        self.workers.append(worker)
        return worker

    # ---- database, channels, logs --------------------------------------------------

    def sql(self, query: str, *args: Any) -> list[Any]:
        """Runs one statement on the test's database (a short-lived asyncpg
        connection) and returns its rows (asyncpg Records; [] for none)."""
        import asyncpg

        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.database_url, timeout=10)
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return _run_coro(run)

    def sql_value(self, query: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        rows = self.sql(query, *args)
        return rows[0][0] if rows else None

    def channel(self, name: str = "frontend") -> Any:
        """A grpc channel to a service (default the frontend), closed at teardown."""
        import grpc

        ch = grpc.insecure_channel(self._get(name).address)
        self._channels.append(ch)
        return ch

    def processes(self) -> list[ManagedProcess]:
        return [*self.services.values(), *self.workers]

    def logs(self) -> str:
        """Every process log of this cluster, each under a header."""
        parts = [f"===== {p.name} ({p.log_path}) =====\n{p.log_text()}" for p in self.processes()]
        for path in self.extra_logs:
            with contextlib.suppress(OSError):
                parts.append(f"===== {path.name} ({path}) =====\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of every process log, each under a header."""
        parts = [
            f"----- {p.name} (pid {p.pid}, {'running' if p.running else f'exit {p.returncode}'}"
            f"), last {lines} lines of {p.log_path} -----\n{p.log_tail(lines)}"
            for p in self.processes()
            if p.process is not None
        ]
        for path in self.extra_logs:
            with contextlib.suppress(OSError):
                parts.append(
                    f"----- last {lines} lines of {path} -----\n"
                    f"{_tail(path.read_text(errors='replace'), lines)}"
                )
        return "\n".join(parts)

    def close(self) -> None:
        """Kills every process this cluster started (workers first)."""
        for ch in self._channels:
            with contextlib.suppress(Exception):
                ch.close()
        for proc in [*self.workers, *self.services.values()]:
            with contextlib.suppress(Exception):
                proc.kill()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Cluster {self.address} db={self.database_url} nats={self.nats_url} prefix={self.nats_prefix}>"
        )


def new_database_name(test_name: str) -> str:
    """A unique, recognisable database name for a test: t_<test>_<hex>."""
    safe = "".join(c if c.isalnum() else "_" for c in test_name.lower()).strip("_")
    return f"t_{safe[:40]}_{secrets.token_hex(3)}"


def make_cluster(
    *,
    log_dir: Path,
    postgres: Any,
    nats: Any,
    test_name: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
    env: Mapping[str, str] | None = None,
    start: bool = True,
    timeout: float = READY_TIMEOUT,
    extra_logs: Iterable[Path] = (),
) -> Cluster:
    """A Cluster on a new database of `postgres` (a server object with
    create_database, or a server URL) and on `nats` (an object with .url, or a URL).
    Started unless start=False (then call .launch())."""
    if isinstance(postgres, str):
        db_url = create_database(postgres, new_database_name(test_name))
    else:
        db_url = postgres.create_database(new_database_name(test_name))
    nats_url = nats if isinstance(nats, str) else nats.url
    cluster = Cluster(
        log_dir=log_dir,
        database_url=db_url,
        nats_url=nats_url,
        lease_seconds=lease_seconds,
        sweep_seconds=sweep_seconds,
        env=env,
        extra_logs=extra_logs,
    )
    if start:
        try:
            cluster.launch(timeout)
        except BaseException:
            cluster.close()
            raise
    return cluster


__all__ = [
    "Cluster",
    "ExternalNats",
    "ExternalPostgres",
    "ManagedProcess",
    "ServiceProcess",
    "WorkerProcess",
    "REPO_ROOT",
    "TESTS_DIR",
    "database_url_for",
    "make_cluster",
    "new_database_name",
    "wait_for",
    "wait_serving",
]


def json_payload(value: Any) -> Any:
    """A json/plain Payload message of value."""
    from cairn.v1 import common_pb2 as cpb

    return cpb.Payload(data=json.dumps(value).encode(), encoding="json/plain")


def b64_json(value: Any) -> str:
    """value as JSON, base64-encoded: a bytes field in grpcurl's JSON."""
    return base64.b64encode(json.dumps(value).encode()).decode()


# ---- helpers shared by the test files ------------------------------------------------

GRPCURL = shutil.which("grpcurl") or str(Path(PYTHON).parent / "grpcurl")
# Every table a test counts to show that a refused request wrote nothing.
ALL_TABLES = (
    "runs",
    "run_events",
    "queue_entries",
    "steps",
    "attempts",
    "timers",
    "waits",
    "child_waits",
    "run_inbox",
    "wait_tokens",
    "schedules",
    "tasks",
    "workers",
)


def worker_alive(worker: WorkerProcess) -> bool:
    """True while `worker` runs; once it has exited, raises AssertionError with its
    exit code and the end of its log (so a wait_for on it fails at once)."""
    if not worker.running:
        raise AssertionError(f"{worker.name} exited with code {worker.returncode}:\n{worker.log_tail(40)}")
    return True


def wait_registered(
    cluster: Cluster, *task_ids: str, worker: WorkerProcess | None = None, timeout: float = 20.0
) -> None:
    """Waits until every task of `task_ids` is in the tasks table and, when `worker`
    is given, that worker logged its registration (it polls right after). Fails at
    once, with its log, when the worker exits."""

    def registered() -> bool:
        if worker is not None:
            worker_alive(worker)
            if "worker registered" not in worker.log_text():
                return False
        if not task_ids:
            return True
        n = cluster.sql_value("SELECT count(*) FROM tasks WHERE task_id = ANY($1::text[])", list(task_ids))
        return n == len(task_ids)

    parts = []
    if task_ids:
        parts.append(f"tasks {', '.join(task_ids)} never all in the tasks table")
    if worker is not None:
        parts.append(f"{worker.name} never logged its registration")
    wait_for(registered, timeout, message=" or ".join(parts) or "nothing to wait for")


def table_counts(cluster: Cluster, tables: Iterable[str] = ALL_TABLES) -> dict[str, int]:
    """The number of rows of each table, by name."""
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables)
    return dict(cluster.sql(query)[0])


def assert_clean(details: str) -> None:
    """Asserts an error message (an RPC's details, an exception, stderr) holds no
    stack trace."""
    assert "Traceback" not in details, details
    assert 'File "' not in details, details


def grpcurl(
    address: str, *args: str, data: Any = None, timeout: float = 40
) -> subprocess.CompletedProcess[str]:
    """Runs `grpcurl -plaintext [-d JSON(data)] ADDRESS ARGS...` (a method, or "list")."""
    argv = [GRPCURL, "-plaintext"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    argv += [address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def grpcurl_call(address: str, method: str, data: Any) -> dict[str, Any]:
    """Calls method with grpcurl and returns its JSON answer; fails on an error."""
    proc = grpcurl(address, method, data=data)
    assert proc.returncode == 0, f"grpcurl {method} failed ({proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def grpcurl_error(address: str, method: str, data: Any, code: str) -> str:
    """Asserts grpcurl's call fails with `code` (e.g. "FailedPrecondition"); returns
    its stderr."""
    proc = grpcurl(address, method, data=data)
    assert proc.returncode != 0, f"grpcurl {method} succeeded: {proc.stdout}"
    assert f"Code: {code}" in proc.stderr, proc.stderr
    return proc.stderr


def json_field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of grpcurl's JSON by its proto name, printed either in lowerCamelCase
    (the proto3 JSON default) or as the original snake_case name."""
    camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
    if camel in obj:
        return obj[camel]
    return obj.get(name, default)
