"""Meter: CPU per process (from /proc) and transactions and WAL bytes per unit of
work (from PostgreSQL), measured around a workload; optionally the statements that
took the most PostgreSQL time (pg_stat_statements)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import cpu_delta_ms_per, cpu_snapshot
from bench.settings import SETTLE


class Meter:
    """CPU per process and transactions/WAL per unit of work, around a workload."""

    def __init__(self, admin: Any, dbname: str, pids: dict[str, Any], statements: bool = False) -> None:
        self.admin = admin  # an asyncpg connection to the 'postgres' database
        self.dbname = dbname
        self.pids = pids
        self.statements = statements
        self.top: list[dict[str, Any]] = []

    async def _db(self) -> tuple[int, int]:
        row = await self.admin.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xids, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal"
        )
        # Transaction ids handed out: the committed writing transactions (nothing
        # else writes meanwhile). pg_stat_database's counters lag up to 10 s.
        return int(row["xids"]), int(row["wal"])

    async def __aenter__(self) -> Meter:
        await asyncio.sleep(SETTLE)
        self.db0 = await self._db()
        if self.statements:
            await self.admin.execute("SELECT pg_stat_statements_reset()")
        self.cpu0 = cpu_snapshot(self.pids)
        self.t0 = time.monotonic()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cpu1 = cpu_snapshot(self.pids)
        await asyncio.sleep(SETTLE)
        self.db1 = await self._db()
        if self.statements:
            rows = await self.admin.fetch(
                "SELECT s.query, s.calls, s.total_exec_time, s.rows FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 "
                "ORDER BY s.total_exec_time DESC LIMIT 8",
                self.dbname,
            )
            self.top = [
                {
                    "query": " ".join(r["query"].split())[:300],
                    "calls": r["calls"],
                    "total_ms": round(r["total_exec_time"], 1),
                    "mean_ms": round(r["total_exec_time"] / max(1, r["calls"]), 3),
                    "rows": r["rows"],
                }
                for r in rows
            ]

    def per(self, count: int) -> dict[str, Any]:
        """Per unit of work: count is what completed (an INCOMPLETE workload's too)."""
        commits = self.db1[0] - self.db0[0]
        out = {
            "cpu_ms_per_run": cpu_delta_ms_per(self.cpu0, self.cpu1, count),
            "transactions_per_run": round(commits / max(1, count), 2),
            "wal_bytes_per_run": round((self.db1[1] - self.db0[1]) / max(1, count)),
        }
        if self.top:
            out["top_statements"] = self.top
        return out
