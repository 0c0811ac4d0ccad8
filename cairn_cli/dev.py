"""`cairn dev`: a whole cluster on this machine from pip-installed parts:
embedded PostgreSQL and NATS, then history, matching and frontend as separate
processes. Data lives under one directory, so runs survive a restart. It stops
in the reverse order, each part after the ones that use it: frontend, matching,
history (each drains within its shutdown grace), then NATS, then PostgreSQL."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cairn import credentials, keys
from cairn_cli.embedded import EmbeddedNats, EmbeddedPostgres
from cairn_cli.processes import secret_file
from services.common.config import DEFAULT_SHUTDOWN_GRACE, env
from services.common.db import redacted_url

SERVICES = ("history", "matching", "frontend")  # started in this order, stopped in the reverse
# Waited for a service to stop beyond its shutdown grace, before it is killed.
STOP_MARGIN = 5.0
# The services' shared internal credential, made at the first start (0600).
CREDENTIAL_FILE = "internal_credential"
# The embedded PostgreSQL's superuser password (0600); the services get the
# database URL with it in their environment.
PASSWORD_FILE = "postgres_password"


def admin_key(path: Path) -> tuple[str, bool]:
    """The admin key kept in `path` (credentials.ADMIN_KEY_FILE of the data
    directory, where the CLI and `cairn worker` find it), made at the first
    start and written readable by its owner only; True when made now."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        if keys.split(key) is None:
            raise RuntimeError(f"{path} does not hold a Cairn API key; delete it to make a new one")
        return key, False
    key = keys.new_key()[1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


def _client_setting(name: str) -> bool:
    """A variable a shell sets for the CLI and SDK (e.g. CAIRN_TLS_CERT for a
    client certificate) that the services would read as their own: not passed
    to the services cairn dev starts, which serve plaintext on loopback."""
    return name.startswith("CAIRN_TLS_") or name in ("CAIRN_API_KEY", "CAIRN_ADDRESS", "CAIRN_NAMESPACE")


def _shutdown_grace() -> float:
    """The services' shutdown grace (CAIRN_SHUTDOWN_GRACE, which they read too)."""
    try:
        return max(0.0, float(os.environ.get("CAIRN_SHUTDOWN_GRACE", "")))
    except ValueError:
        return DEFAULT_SHUTDOWN_GRACE


def _stop_service(name: str, proc: subprocess.Popen[bytes], timeout: float, hurry: list[bool]) -> None:
    """SIGTERM, then waits for it to drain and exit; killed after timeout, or
    at once after a second Ctrl-C (hurry)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if hurry[0] or time.monotonic() > deadline:
            if not hurry[0]:
                print(f"cairn dev: {name} did not stop within {timeout:g}s; killing it", flush=True)
            proc.kill()
            proc.wait()
            return
        time.sleep(0.05)


def _healthy(address: str) -> bool:
    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="cairn dev", description=__doc__)
    p.add_argument(
        "--data-dir", default=env("DEV_DIR", ".cairn"), help="where data and logs live (default .cairn)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=7373,
        help="frontend gRPC port (default 7373); the other ports follow it (HTTP +1, history +2, "
        "matching +3, PostgreSQL +4, NATS +5, metrics +6 and +7), so two `cairn dev` 10 apart do not collide",
    )
    p.add_argument("--history-port", type=int, help="(default --port + 2)")
    p.add_argument("--matching-port", type=int, help="(default --port + 3)")
    p.add_argument("--postgres-port", type=int, help="(default --port + 4)")
    p.add_argument("--nats-port", type=int, help="(default --port + 5)")
    p.add_argument("--http-port", type=int, help="frontend HTTP API, /docs and /metrics (default --port + 1)")
    p.add_argument("--history-metrics-port", type=int, help="history's /metrics (default --port + 6)")
    p.add_argument("--matching-metrics-port", type=int, help="matching's /metrics (default --port + 7)")
    args = p.parse_args(argv)
    for name, offset in (("history_port", 2), ("matching_port", 3), ("postgres_port", 4), ("nats_port", 5)):
        if getattr(args, name) is None:
            setattr(args, name, args.port + offset)
    http_port = args.http_port or args.port + 1
    extra = {
        "history": ["--metrics-address", f"127.0.0.1:{args.history_metrics_port or args.port + 6}"],
        "matching": ["--metrics-address", f"127.0.0.1:{args.matching_metrics_port or args.port + 7}"],
        "frontend": ["--http-address", f"127.0.0.1:{http_port}"],
    }
    data = Path(args.data_dir).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    pg = EmbeddedPostgres(
        data / "postgres",
        args.postgres_port,
        log_path=logs / "postgres.log",
        password_file=data / PASSWORD_FILE,
    )
    nats = EmbeddedNats(data / "nats", args.nats_port, log_path=logs / "nats.log")
    # Their own sessions, like the services': a Ctrl-C in the terminal reaches
    # only cairn dev, which stops them last, after the services that use them.
    pg.own_session = nats.own_session = True
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False
    hurry = [False]

    def shutdown(*_: object) -> None:
        """Frontend, matching, history (each drained, one after the other:
        each is a client of the next), then NATS, then PostgreSQL. A second
        Ctrl-C kills the services that are still draining."""
        nonlocal stopping
        if stopping:
            return
        stopping = True

        def again(*_: object) -> None:
            hurry[0] = True

        signal.signal(signal.SIGINT, again)
        signal.signal(signal.SIGTERM, again)
        print("\ncairn dev: stopping (Ctrl-C again to kill the services at once)", flush=True)
        for name in reversed(SERVICES):
            if name in procs:
                _stop_service(name, procs[name], _shutdown_grace() + STOP_MARGIN, hurry)
        nats.stop()
        pg.stop()
        print("cairn dev: stopped", flush=True)

    def on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        pg.start()
        db_url = pg.create_database("cairn", exists_ok=True)
        nats_url = nats.start()
        key, new_key = admin_key(data / credentials.ADMIN_KEY_FILE)
        addresses = {
            "history": f"127.0.0.1:{args.history_port}",
            "matching": f"127.0.0.1:{args.matching_port}",
            "frontend": f"127.0.0.1:{args.port}",
        }
        child_env = {
            **{k: v for k, v in os.environ.items() if not _client_setting(k)},
            "CAIRN_DATABASE_URL": db_url,
            "CAIRN_NATS_URL": nats_url,
            "CAIRN_HISTORY_ADDRESS": addresses["history"],
            "CAIRN_MATCHING_ADDRESS": addresses["matching"],
            # by the environment, not argv, where ps would show it
            "CAIRN_INTERNAL_CREDENTIAL": secret_file(data / CREDENTIAL_FILE),
            "CAIRN_ADMIN_KEY": key,  # matching stores it at start (a key for every namespace)
            "PYTHONUNBUFFERED": "1",
        }
        for name in SERVICES:
            log = open(logs / f"{name}.log", "ab")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "cairn_cli", name, "--listen", addresses[name], *extra[name]],
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        for name in SERVICES:
            while not _healthy(addresses[name]):
                if procs[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {logs / (name + '.log')}")
                time.sleep(0.05)
        print(
            f"cairn dev: ready. frontend on {addresses['frontend']}  "
            f"(PostgreSQL {redacted_url(db_url)}, NATS {nats_url}, data and logs in {data})",
            flush=True,
        )
        print(f"cairn dev: dashboard at http://127.0.0.1:{http_port}/", flush=True)
        print(
            f"cairn dev: HTTP API on http://127.0.0.1:{http_port}/v1 (reference at /docs, metrics at "
            f"/metrics; history's and matching's metrics at {extra['history'][1]} and {extra['matching'][1]})",
            flush=True,
        )
        if new_key:
            print(
                f"cairn dev: made an admin key for every namespace; it is shown only now and kept in "
                f"{data / credentials.ADMIN_KEY_FILE}, where `cairn` and `cairn worker` run from "
                f"{data.parent} find it (elsewhere: CAIRN_API_KEY or --api-key):\n  {key}",
                flush=True,
            )
        else:
            print(f"cairn dev: the admin key is in {data / credentials.ADMIN_KEY_FILE}", flush=True)
        print("cairn dev: press Ctrl-C to stop", flush=True)
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}"
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        shutdown()
    except RuntimeError as exc:
        print(f"cairn dev: {exc}", file=sys.stderr, flush=True)
        shutdown()
        sys.exit(1)
