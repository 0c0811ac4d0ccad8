"""`cairn migrate` as deployments run it (compose's one-shot service, the
Kubernetes Job): a real process on an empty database applies every migration
and exits 0; run again it applies nothing and exits 0; a database that cannot
be reached is one line and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from harness.database import new_database_name, sql

from services.common import db


def _migrate(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["CAIRN_DATABASE_URL"] = url  # as the deployments hand it: never on argv
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", "migrate", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_applies_every_migration_once(postgres_server: Any) -> None:
    url = postgres_server.create_database(new_database_name("migrate_command"))
    first = _migrate(url)
    assert first.returncode == 0, first.stderr
    expected = [version for version, _, _ in db.migrations()]
    versions = [r["version"] for r in sql(url, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == expected
    assert f"at migration {expected[-1]:04d}" in first.stderr
    again = _migrate(url)
    assert again.returncode == 0, again.stderr
    assert "applied migration" not in again.stderr
    assert [
        r["version"] for r in sql(url, "SELECT version FROM schema_migrations ORDER BY version")
    ] == expected


def test_unreachable_database_is_one_line() -> None:
    done = _migrate("postgresql://cairn:secret@127.0.0.1:1/cairn", "--wait-seconds", "0")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("cairn migrate: cannot connect to the database at postgresql://cairn:***@")
    assert "secret" not in done.stderr
