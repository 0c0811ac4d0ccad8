"""The Cairn cluster under test: history, matching and frontend, each a process, and
worker processes serving bench/tasks.py, started as `cairn dev` starts them: the
frontend serves HTTP on a free port, history and matching serve /metrics (when the
checkout has metrics) on a free port. `tree` is the checkout the services, the SDK
and the workers' bench/tasks.py are imported from: this one, or another (a git
worktree of an older commit, for --baseline-tree), with this .venv's packages."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

from bench.processes import Proc
from bench.settings import REPO, SERVICES


def _healthy(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class CairnCluster:
    """history, matching, frontend and workers as processes, as `cairn dev` starts them."""

    def __init__(
        self,
        logs: Path,
        database_url: str,
        nats_url: str,
        workers: int,
        slots: int,
        retention_days: float,
        prune_seconds: float,
        tree: Path = REPO,
        watch_frontend: bool = False,
    ) -> None:
        from cairn import keys
        from cairn_cli.embedded import free_ports

        self.tree = tree.resolve()
        self.api_key = keys.new_key()[1]  # an admin key for every namespace
        self.logs = logs
        self.database_url = database_url
        self.nats_url = nats_url
        self.n_workers = workers
        self.slots = slots
        ports = free_ports(len(SERVICES) + 3)
        self.addresses = {k: f"127.0.0.1:{port}" for k, port in zip(SERVICES, ports, strict=False)}
        self.address = self.addresses["frontend"]
        self.http_address = f"127.0.0.1:{ports[len(SERVICES)]}"
        # w's watchers: on the frontend the workers use, or (watch_frontend) on a second replica
        self.watch_frontend = watch_frontend
        self.watch_address, self.watch_http_address = self.address, self.http_address
        if watch_frontend:
            self.addresses["watch-frontend"] = f"127.0.0.1:{ports[-2]}"
            self.watch_address = self.addresses["watch-frontend"]
            self.watch_http_address = f"127.0.0.1:{ports[-1]}"
        # history's and matching's --metrics-address, where the checkout has it (73dd04f on)
        self.metrics = "metrics-address" in _read(self.tree / "services" / "common" / "config.py")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(
            PYTHONUNBUFFERED="1",
            CAIRN_LOG_LEVEL="WARNING",
            # before .venv's editable install of this checkout (a finder after sys.path)
            PYTHONPATH=os.pathsep.join(filter(None, [str(self.tree), env.get("PYTHONPATH")])),
            CAIRN_HISTORY_ADDRESS=self.addresses["history"],
            CAIRN_MATCHING_ADDRESS=self.addresses["matching"],
            CAIRN_ADDRESS=self.address,
            CAIRN_RETENTION_DAYS=f"{retention_days:g}",
            CAIRN_PRUNE_SECONDS=f"{prune_seconds:g}",
            # history and matching take calls only with it (an older tree ignores it)
            CAIRN_INTERNAL_CREDENTIAL=secrets.token_urlsafe(32),
            # matching stores it; the workers send it; an older tree ignores both
            CAIRN_ADMIN_KEY=self.api_key,
            CAIRN_API_KEY=self.api_key,
            CAIRN_KEY_RATE="0",  # one key drives the whole load: no limit per key
        )
        self.env = env
        os.environ["CAIRN_API_KEY"] = self.api_key  # the bench's own clients
        self.services: dict[str, Proc] = {}
        self.workers: list[Proc] = []

    def _args(self, kind: str) -> list[str]:
        if kind == "watch-frontend":
            args = self._args("frontend")
            args[args.index("--listen") + 1] = self.watch_address
            args[args.index("--http-address") + 1] = self.watch_http_address
            return args
        base = [sys.executable, "-m", "cairn_cli", kind, "--listen", self.addresses[kind]]
        if kind != "frontend" and self.metrics:
            base += ["--metrics-address", "127.0.0.1:0"]
        if kind == "history":
            return base + ["--database-url", self.database_url, "--nats-url", self.nats_url]
        if kind == "matching":
            return base + [
                "--database-url",
                self.database_url,
                "--nats-url",
                self.nats_url,
                "--history-address",
                self.addresses["history"],
            ]
        return base + [
            "--history-address",
            self.addresses["history"],
            "--matching-address",
            self.addresses["matching"],
            "--nats-url",
            self.nats_url,
            "--http-address",
            self.http_address,
        ]

    def start(self, timeout: float = 60) -> None:
        kinds = [*SERVICES, *(["watch-frontend"] if self.watch_frontend else [])]
        for kind in kinds:
            self.services[kind] = Proc(
                kind, self._args(kind), self.logs / f"{kind}.log", self.env, cwd=self.tree
            )
        deadline = time.monotonic() + timeout
        for kind in kinds:
            while not _healthy(self.addresses[kind]):
                proc = self.services[kind]
                if not proc.running() or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start; last lines of {proc.log_path}:\n{proc.tail()}")
                time.sleep(0.05)
        for i in range(self.n_workers):
            name = f"worker-{i + 1}"
            self.workers.append(
                Proc(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "cairn_cli",
                        "worker",
                        "bench.tasks",
                        "--address",
                        self.address,
                        "--slots",
                        str(self.slots),
                    ],
                    self.logs / f"{name}.log",
                    self.env,
                    cwd=self.tree,
                )
            )

    def check(self) -> None:
        for proc in [*self.services.values(), *self.workers]:
            if not proc.running():
                raise RuntimeError(
                    f"{proc.name} exited with code {proc.popen.returncode}; "
                    f"last lines of {proc.log_path}:\n{proc.tail()}"
                )

    def pids(self) -> dict[str, int | list[int] | None]:
        return {**{k: p.pid for k, p in self.services.items()}, "workers": [w.pid for w in self.workers]}

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()
        for kind in ["watch-frontend", *reversed(SERVICES)]:
            if kind in self.services:
                self.services[kind].stop()
