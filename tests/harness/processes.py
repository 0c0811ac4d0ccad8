"""Child processes of the harness: services and workers, each with its output
appended to a log file, started, stopped, killed (a crash), paused (SIGSTOP)
and resumed, and the environment every child gets."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
PYTHON = sys.executable
LOG_TAIL_LINES = 80


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of text."""
    return "\n".join(text.splitlines()[-lines:])


def base_env(extra_pythonpath: Iterable[Path] = ()) -> dict[str, str]:
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
        return tail(self.log_text(), lines)

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
        # How the harness's health checks reach it when it serves TLS (None: plaintext).
        self.credentials: grpc.ChannelCredentials | None = None

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


def worker_alive(worker: WorkerProcess) -> bool:
    """True while `worker` runs; once it has exited, raises AssertionError with its
    exit code and the end of its log (so a wait_for on it fails at once)."""
    if not worker.running:
        raise AssertionError(f"{worker.name} exited with code {worker.returncode}:\n{worker.log_tail(40)}")
    return True
