"""What the figures were measured on: the machine, the PostgreSQL server's version
and settings, and the Cairn commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.settings import REPO


def machine(pg_version: str, pg_settings: dict[str, str]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "services", "worker_sdk", "cairn"],
            capture_output=True,
            text=True,
        ).stdout.strip():
            commit += " (modified)"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "cairn_commit": commit,
        "load_average_at_start": os.getloadavg(),
    }


async def pg_info(url: str) -> tuple[str, dict[str, str]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {
            r["name"]: r["value"]
            for r in await conn.fetch(
                "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1::text[])",
                [
                    "fsync",
                    "synchronous_commit",
                    "shared_buffers",
                    "max_connections",
                    "wal_sync_method",
                    "full_page_writes",
                ],
            )
        }
        return version, settings
    finally:
        await conn.close()
