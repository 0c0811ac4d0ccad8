"""The embedded servers of `cairn dev` and of the harness: start, stop, kill -9 and
restart on the same data, and clear errors when a server cannot come up."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from harness import wait_for

from cairn_cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port


@pytest.fixture
def pg_root() -> Iterator[Path]:
    # Outside pytest's 0700 tmp tree, which the postgres OS user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="cairn-test-embedded-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fetch(url: str, query: str, *args: object) -> list:
    async def run() -> list:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_postgres_survives_kill_9_stop_and_restart(pg_root: Path) -> None:
    pg = EmbeddedPostgres(pg_root / "data")
    try:
        url = pg.start()
        assert url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        assert pg.pid is not None and pg.process is not None
        assert (pg_root / "postgres.log").exists(), "the log sits next to the data directory"

        db = pg.create_database("embedded_check")
        assert db == f"postgresql://postgres@127.0.0.1:{pg.port}/embedded_check"
        with pytest.raises(asyncpg.DuplicateDatabaseError):
            pg.create_database("embedded_check")
        assert pg.create_database("embedded_check", exists_ok=True) == db
        fetch(db, "CREATE TABLE t (id int PRIMARY KEY, note text)")
        fetch(db, "INSERT INTO t VALUES (1, 'before the crash')")

        old_pid = pg.pid
        pg.kill()
        assert pg.pid is None
        assert (pg.data_dir / "postmaster.pid").exists(), "kill -9 leaves a stale postmaster.pid"
        with pytest.raises(OSError):
            fetch(db, "SELECT 1")

        pg.start()
        assert pg.pid != old_pid
        assert [tuple(r) for r in fetch(db, "SELECT id, note FROM t")] == [(1, "before the crash")]
        fetch(db, "INSERT INTO t VALUES (2, 'after the crash')")

        pg.stop()
        assert pg.pid is None
        assert not (pg.data_dir / "postmaster.pid").exists(), "a clean stop removes the pid file"
        pg.start()
        assert [r["id"] for r in fetch(db, "SELECT id FROM t ORDER BY id")] == [1, 2]
        pg.stop()

        # What `cairn dev` does on its next run: a new object on the same data
        # directory (no initdb again), here on another port.
        pg2 = EmbeddedPostgres(pg_root / "data")
        try:
            pg2.start()
            assert fetch(pg2.database_url("embedded_check"), "SELECT count(*) FROM t")[0][0] == 2
            assert "database system is ready" in (pg_root / "postgres.log").read_text()
        finally:
            pg2.stop()
    finally:
        pg.kill()


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"  # a zombie nobody reaped yet is gone too


def test_postgres_left_running_by_a_dead_parent_is_replaced(pg_root: Path) -> None:
    """`cairn dev` killed with -9 leaves its postgres running; the next start
    stops that server and starts its own on the same data directory."""
    data = pg_root / "data"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cairn_cli.embedded import EmbeddedPostgres
        pg = EmbeddedPostgres(Path({str(data)!r}))
        pg.start()
        print(pg.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pg: EmbeddedPostgres | None = None
    stray = 0
    try:
        assert parent.stdout is not None
        stray = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        os.kill(stray, 0)  # the orphaned server still runs

        pg = EmbeddedPostgres(data)
        pg.start()
        assert pg.pid != stray
        wait_for(lambda: _gone(stray), 5, message="the stray postgres is gone")
        assert fetch(pg.url, "SELECT 1")[0][0] == 1
    finally:
        parent.kill()
        if pg is not None:
            pg.kill()
        if stray:
            try:
                os.kill(stray, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_postgres_error_names_binary_port_and_log(pg_root: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        pg = EmbeddedPostgres(pg_root / "data", port=port)
        started = time.monotonic()
        with pytest.raises(RuntimeError) as info:
            pg.start(timeout=20)
        assert time.monotonic() - started < 10, "a server that exits fails at once"
    message = str(info.value)
    assert "postgres" in message and str(port) in message
    assert "could not" in message.lower(), "the log tail explains the failure"
    assert pg.pid is None


def test_postgres_refuses_a_foreign_non_empty_directory(pg_root: Path) -> None:
    data = pg_root / "data"
    data.mkdir()
    (data / "notes.txt").write_text("not a database")
    with pytest.raises(RuntimeError, match="neither empty nor initialised"):
        EmbeddedPostgres(data).start()


def _refused(url: str) -> str:
    """The error of a connection PostgreSQL refuses (asyncpg's text)."""
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as refused:
        fetch(url, "SELECT 1")
    return str(refused.value)


def test_postgres_with_a_password_file_needs_the_password(pg_root: Path) -> None:
    # cairn dev's server: initdb gives the superuser a random password, kept in
    # a 0600 file outside the data directory; a host connection without it, or
    # with another, is refused.
    password_file = pg_root / "postgres_password"
    pg = EmbeddedPostgres(pg_root / "data", password_file=password_file)
    try:
        url = pg.start()
        assert password_file.stat().st_mode & 0o777 == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 32 and pg.password == password
        assert url == f"postgresql://postgres:{password}@127.0.0.1:{pg.port}/postgres"
        db = pg.create_database("with_password")
        assert fetch(db, "SELECT current_user")[0][0] == "postgres"
        assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/with_password")
        assert "password" in _refused(f"postgresql://postgres:guess@127.0.0.1:{pg.port}/with_password")

        # The next start reads the same password; the data is kept.
        pg.stop()
        again = EmbeddedPostgres(pg_root / "data", password_file=password_file)
        try:
            again.start()
            assert again.password == password
            assert fetch(again.database_url("with_password"), "SELECT 1")[0][0] == 1
        finally:
            again.stop()

        # A password file that does not match the data directory: a clear error.
        stranger = EmbeddedPostgres(pg_root / "data", password_file=pg_root / "another_password")
        with pytest.raises(RuntimeError, match="refused the password in .*another_password"):
            stranger.start(timeout=15)
        assert stranger.pid is None
    finally:
        pg.kill()


def test_a_data_dir_made_without_a_password_is_secured_at_its_next_start(
    pg_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A .cairn made before passwords: its next start sets the password over the
    # trusted loopback, turns pg_hba.conf's host lines to scram-sha-256, says so
    # once, and keeps the data.
    old = EmbeddedPostgres(pg_root / "data")
    try:
        old.start()
        fetch(old.create_database("kept"), "CREATE TABLE t AS SELECT 7 AS x")
    finally:
        old.stop()
    password_file = pg_root / "postgres_password"
    pg = EmbeddedPostgres(pg_root / "data", password_file=password_file)
    try:
        pg.start()
        assert "now requires a password" in capsys.readouterr().err
        assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/kept")
        assert fetch(pg.database_url("kept"), "SELECT x FROM t")[0][0] == 7
        hba = (pg.data_dir / "pg_hba.conf").read_text()
        host_methods = {line.split()[-1] for line in hba.splitlines() if line.startswith("host")}
        assert host_methods == {"scram-sha-256"}, hba
        pg.stop()
        pg.start()
        assert "now requires a password" not in capsys.readouterr().err, "secured once"
        assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/kept")
    finally:
        pg.kill()


def _round_trip(url: str, subject: str) -> bytes:
    import nats as nats_client

    async def run() -> bytes:
        nc = await nats_client.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            sub = await nc.subscribe(subject)
            await nc.flush()
            await nc.publish(subject, b"hello " + subject.encode())
            msg = await sub.next_msg(timeout=2)
            return msg.data
        finally:
            await nc.close()

    return asyncio.run(run())


def test_nats_start_kill_restart_same_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "store")
    try:
        url = server.start()
        assert url == f"nats://127.0.0.1:{server.port}"
        assert _round_trip(url, "cairn.a") == b"hello cairn.a"
        assert (tmp_path / "store" / "jetstream").is_dir(), "JetStream stores in store_dir"

        pid = server.pid
        server.kill()
        assert server.pid is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()

        assert server.start() == url
        assert server.pid != pid
        assert _round_trip(url, "cairn.b") == b"hello cairn.b"

        server.stop()
        assert server.pid is None
        server.start()
        assert _round_trip(url, "cairn.c") == b"hello cairn.c"
        assert (tmp_path / "nats.log").read_text().count("starting nats-server") == 3
    finally:
        server.kill()


def test_nats_error_names_binary_port_and_log(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = EmbeddedNats(tmp_path / "store", port=port)
        with pytest.raises(RuntimeError) as info:
            server.start(timeout=5)
    message = str(info.value)
    assert "nats-server" in message and str(port) in message
    assert server.pid is None
