"""The Cluster: history, matching and frontend as processes on one fresh
database and NATS subject prefix, plus the workers a test starts, with their
logs; ``make_cluster`` builds one on a server, ``wait_registered`` waits for a
worker's tasks."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from cairn_cli.embedded import create_database, free_port, free_ports
from services.common import internal_auth

from . import auth, database
from .health import READY_TIMEOUT, wait_serving
from .processes import (
    LOG_TAIL_LINES,
    PYTHON,
    REPO_ROOT,
    ManagedProcess,
    ServiceProcess,
    WorkerProcess,
    base_env,
    tail,
    worker_alive,
)
from .waiting import wait_for

SERVICES = ("history", "matching", "frontend")
DEFAULT_LEASE_SECONDS = 3.0
DEFAULT_SWEEP_SECONDS = 1.0
# How `cairn worker` is told its code version (also set as CAIRN_WORKER_VERSION).
WORKER_VERSION_FLAG = "--version"


class Cluster:
    """history + matching + frontend as processes on one fresh database.

    Attributes: ``address`` (frontend host:port), ``history_address``,
    ``matching_address``, ``database_url``, ``nats_url``, ``nats_prefix``,
    ``env`` (the CAIRN_* settings every child gets, incl. CAIRN_ADDRESS and
    CAIRN_INTERNAL_CREDENTIAL), ``internal_credential`` (a fresh one per cluster),
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
        frontend_args: Iterable[str] = (),
        frontend_credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        # Extra flags of every frontend (e.g. --tls-cert), and the TLS the
        # harness's health checks reach it with (None: plaintext).
        self.frontend_args = list(frontend_args)
        self.frontend_credentials = frontend_credentials
        self.log_dir = log_dir
        self.database_url = database_url
        self.nats_url = nats_url
        self.nats_prefix = nats_prefix or "t" + secrets.token_hex(4)
        self.lease_seconds = lease_seconds
        self.sweep_seconds = sweep_seconds
        self.extra_logs = list(extra_logs)
        self.internal_credential = secrets.token_urlsafe(32)
        ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.env: dict[str, str] = {
            "CAIRN_ADDRESS": f"127.0.0.1:{ports['frontend']}",
            "CAIRN_HISTORY_ADDRESS": f"127.0.0.1:{ports['history']}",
            "CAIRN_MATCHING_ADDRESS": f"127.0.0.1:{ports['matching']}",
            "CAIRN_DATABASE_URL": database_url,
            "CAIRN_NATS_URL": nats_url,
            "CAIRN_NATS_PREFIX": self.nats_prefix,
            "CAIRN_LEASE_SECONDS": f"{lease_seconds:g}",
            "CAIRN_SWEEP_SECONDS": f"{sweep_seconds:g}",
            "CAIRN_INTERNAL_CREDENTIAL": self.internal_credential,
            **auth.env(),
        }
        self.env.update(env or {})
        self.services: dict[str, ServiceProcess] = {}
        self.workers: list[WorkerProcess] = []
        self._channels: list[grpc.Channel] = []
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
        base = [PYTHON, "-m", "cairn_cli", kind, "--listen", f"127.0.0.1:{port}"]
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
            # Each frontend its own HTTP port (the default one is shared by every
            # cluster on the machine), unless the test names it in the env.
            http = [] if "CAIRN_HTTP_ADDRESS" in self.env else ["--http-address", f"127.0.0.1:{free_port()}"]
            return base + [
                "--history-address",
                history,
                "--matching-address",
                matching or self.env["CAIRN_MATCHING_ADDRESS"],
                "--nats-url",
                self.nats_url,
                *http,
                *self.frontend_args,
            ]
        raise ValueError(f"unknown service kind {kind!r}; expected one of {', '.join(SERVICES)}")

    def _add_service(self, name: str, kind: str, port: int, matching: str | None = None) -> ServiceProcess:
        env = {**base_env(), **self.env}
        svc = ServiceProcess(
            name, kind, port, self._service_args(kind, port, matching), env, self.log_dir / f"{name}.log"
        )
        if kind == "frontend":
            svc.credentials = self.frontend_credentials
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
        svc.env = {**base_env(), **self.env}
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
        argv = [PYTHON, "-m", "cairn_cli", "worker", module]
        argv += ["--address", address or self.address, "--slots", str(slots)]
        child_env = {**base_env([work_dir] if cwd is not None else []), **self.env}
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
        return database.sql(self.database_url, query, *args)

    def sql_value(self, query: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        rows = self.sql(query, *args)
        return rows[0][0] if rows else None

    def channel(
        self, name: str = "frontend", *, key: str | None = auth.ADMIN_KEY, credential: bool = True
    ) -> grpc.Channel:
        """A grpc channel to a service (default the frontend), closed at teardown;
        its calls to the frontend carry `key` (the session's admin key; None for
        none), to history or matching the cluster's internal credential (as a
        service of the cluster sends it), unless credential=False."""
        kind = self._get(name).kind
        ch = auth.channel(self._get(name).address, key if kind == "frontend" else None)
        self._channels.append(ch)
        if kind != "frontend" and credential and self.env.get("CAIRN_INTERNAL_CREDENTIAL"):
            return internal_auth.credentialed(ch, self.env["CAIRN_INTERNAL_CREDENTIAL"])  # type: ignore[arg-type,return-value]
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
                text = tail(path.read_text(errors="replace"), lines)
                parts.append(f"----- last {lines} lines of {path} -----\n{text}")
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
    frontend_args: Iterable[str] = (),
    frontend_credentials: grpc.ChannelCredentials | None = None,
) -> Cluster:
    """A Cluster on a new database of `postgres` (a server object with
    create_database, or a server URL) and on `nats` (an object with .url, or a URL).
    Started unless start=False (then call .launch()). frontend_args: extra
    flags of the frontends, reached with frontend_credentials (TLS) if given."""
    name = database.new_database_name(test_name)
    db_url = create_database(postgres, name) if isinstance(postgres, str) else postgres.create_database(name)
    cluster = Cluster(
        log_dir=log_dir,
        database_url=db_url,
        nats_url=nats if isinstance(nats, str) else nats.url,
        lease_seconds=lease_seconds,
        sweep_seconds=sweep_seconds,
        env=env,
        extra_logs=extra_logs,
        frontend_args=frontend_args,
        frontend_credentials=frontend_credentials,
    )
    if start:
        try:
            cluster.launch(timeout)
        except BaseException:
            cluster.close()
            raise
    return cluster


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
        return bool(n == len(task_ids))

    parts = []
    if task_ids:
        parts.append(f"tasks {', '.join(task_ids)} never all in the tasks table")
    if worker is not None:
        parts.append(f"{worker.name} never logged its registration")
    wait_for(registered, timeout, message=" or ".join(parts) or "nothing to wait for")
