"""The processes the benchmark starts, and stopping every one of them at the end.

- Proc: a child process in its own session, with its output in a log file; every
  Proc is in Proc.registry until stopped;
- Servers: the one PostgreSQL and the one NATS of an invocation, and a sentinel
  process that stops them if the benchmark dies without cleaning up (kill -9);
- cleanup(): stops every Proc, then runs the registered cleanups (the servers,
  removing the temporary directory);
- on_signal(): the Ctrl-C/SIGTERM handler; interrupted() tells whether it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.settings import REPO


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench process dies, even by
    SIGKILL (Linux prctl PR_SET_PDEATHSIG), so nothing outlives a killed bench."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Proc:
    """A child process in its own session (so Ctrl-C reaches only us, and we stop
    it in order), with its output in a log file."""

    registry: list[Proc] = []

    def __init__(
        self, name: str, args: list[str], log_path: Path, env: dict[str, str], cwd: Path = REPO
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        Proc.registry.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ValueError):
            Proc.registry.remove(self)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Servers:
    """The one PostgreSQL and the one NATS of this invocation."""

    def __init__(self, root: Path, statements: bool = False) -> None:
        from cairn_cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port

        settings = (
            {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
            if statements
            else {}
        )
        self.pg = EmbeddedPostgres(
            root / "pg" / "data", free_port(), log_path=root / "logs" / "postgres.log", settings=settings
        )
        self.nats = EmbeddedNats(root / "nats" / "store", free_port(), log_path=root / "logs" / "nats.log")

    def start(self, logs: Path) -> None:
        self.pg.start()
        self.nats.start()
        # A sentinel that stops both servers if this process dies without cleaning
        # up (kill -9): it gets SIGTERM when we die, and passes it on.
        pids = {"postgres": self.pg.pid, "nats": self.nats.pid}
        Proc(
            "sentinel",
            [sys.executable, "-c", _SENTINEL, json.dumps(pids)],
            logs / "sentinel.log",
            dict(os.environ),
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.nats.stop()
        with contextlib.suppress(Exception):
            self.pg.stop()
        for proc in list(Proc.registry):  # the sentinel: nothing left to guard, and
            if proc.name == "sentinel":  # SIGKILL so it signals no (reused) PID
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait()
                Proc.registry.remove(proc)


_SENTINEL = """
import json, os, signal, sys, time
pids = json.loads(sys.argv[1])
def stop(*_):
    for name, sig in (("postgres", signal.SIGINT), ("nats", signal.SIGTERM)):
        try:
            os.kill(pids[name], sig)
        except (OSError, TypeError):
            pass
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(3600)
"""

cleanups: list[Callable[[], None]] = []


def cleanup() -> None:
    """Stops everything this invocation started: our children, then the servers."""
    for proc in list(reversed(Proc.registry)):
        if proc.name != "sentinel":
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
    while cleanups:
        with contextlib.suppress(Exception):
            cleanups.pop()()


_interrupted = False


def on_signal(*_: object) -> None:
    """Ctrl-C or SIGTERM: stop measuring at once (a KeyboardInterrupt out of the
    event loop), then clean up; a second signal while cleaning up is ignored."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    # PostgreSQL got the terminal's SIGINT too and is shutting down: asyncpg's pool
    # would log a traceback per reconnection attempt.
    import logging

    logging.getLogger("asyncpg").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM has been received (on_signal)."""
    return _interrupted
