"""Child server processes for the embedded PostgreSQL and NATS: what both
servers share (start, readiness, log tail, stop and kill, strays left by an
earlier run) and the small process and port helpers under it."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

LOG_TAIL_LINES = 40


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    (port,) = free_ports(1)
    return port


# Ports are chosen below the kernel's ephemeral range (where it picks the local
# port of every outgoing connection), so a connection made between the choice
# and the server's bind cannot take the port; from this port up.
LOWEST_CHOSEN_PORT = 10000


def _ephemeral_start() -> int | None:
    """The first port of the kernel's ephemeral range (Linux), if readable."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now
    (each held while the next is chosen, so no two are the same), below the
    ephemeral range when there is room (else any the kernel gives)."""
    start = _ephemeral_start()
    sockets: list[socket.socket] = []
    try:
        tries = 0
        while (
            start is not None and start - LOWEST_CHOSEN_PORT > 1000 and len(sockets) < count and tries < 200
        ):
            tries += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", LOWEST_CHOSEN_PORT + secrets.randbelow(start - LOWEST_CHOSEN_PORT)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        while len(sockets) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def secret_file(path: Path) -> str:
    """The secret kept in `path`, made (random, URL-safe, 256 bits) and written
    readable by its owner only (0600) when the file does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another process meanwhile: take theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _run_coro(factory: Callable[[], Awaitable[T]]) -> T:
    """Runs a coroutine to completion from sync code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def _log_tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _descendants(pid: int) -> list[int]:
    """PIDs of every process below pid (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _wait_pids_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) and not is_zombie(p) for p in pids):
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


def terminate_stray(pid: int, sig: int, what: str, timeout: float = 10) -> None:
    """Stops a server left over by an earlier run (not our child) that still
    holds our data directory."""
    print(f"cairn: stopping a {what} left over from an earlier run (pid {pid})", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and not is_zombie(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    _wait_pids_gone([pid], 2)


class ChildServer:
    """What both servers share: a child process, a log file, stop and kill."""

    name = "server"
    stop_signal = signal.SIGTERM
    url: str  # set by each kind of server
    # In a session of its own: a Ctrl-C in the terminal (SIGINT to the whole
    # foreground process group) does not reach it, so whoever started it stops
    # it when its turn comes (`cairn dev` stops the services first).
    own_session = False

    def __init__(self, port: int | None, log_path: Path) -> None:
        self.port: int = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._atexit_registered = False

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs (as our child), else None."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _open_log(self) -> IO[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.log_path, "ab", buffering=0)
        self._log_offset = f.tell()
        f.write(
            f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name} on port {self.port}\n".encode()
        )
        return f

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of this run's log."""
        return _log_tail(self.log_path, self._log_offset, lines)

    def _fail(self, what: str) -> RuntimeError:
        binary = str(self.process.args[0]) if self.process is not None else self.name  # type: ignore[index]
        return RuntimeError(
            f"{self.name} ({binary}) on 127.0.0.1:{self.port} {what}; log {self.log_path}:\n{self.log_tail()}"
        )

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop()

    def _children(self) -> list[int]:
        return _descendants(self.process.pid) if self.process is not None else []

    def stop(self, timeout: float = 10) -> None:
        """Asks the server to shut down cleanly; SIGKILL when it does not in time."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            children = self._children()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            _wait_pids_gone(children, timeout)

    def _spawn(self, binary: str, args: list[str], timeout: float, **popen: Any) -> str:
        """Starts the server as our child, logging to the log file, and waits until
        it is ready; kills it if it does not become ready."""
        log = self._open_log()
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                start_new_session=self.own_session,
                **popen,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run {binary}: {exc}") from exc
        finally:
            log.close()  # the child has its own descriptor
        self._register_atexit()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL, as a crash would: the server and every process it started."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            children = self._children()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            proc.wait()
            _wait_pids_gone(children, 10)

    def __enter__(self) -> ChildServer:
        if not self.running:
            self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
