"""Workloads a (1-step jobs) and c (latency) on pgqueuer (PyPI `pgqueuer`), a
plain PostgreSQL job queue, run by bench/run.py with bench/.venv-peers/bin/python:

    python bench/peers/pgqueuer_bench.py --config '{"database_url": ..., ...}'

Its documented API: `Queries(...).install()` once, a consumer
`PgQueuer.from_asyncpg_connection(conn)` with `@pgq.entrypoint(name)` handlers and
`run()` (defaults: batch_size 10, LISTEN/NOTIFY wake-ups), in this process; a
producer `Queries` over an asyncpg pool of 8 connections. A job is the unit of
work here (pgqueuer has no steps and keeps no result), so "1-step" is one job
whose handler returns at once. A job is done when its row has left the queue
table (pgqueuer deletes it, in batches, when it logs the completion); the harness
polls for that every 20 ms, as it polls Cairn's runs table.

It prints one line "BENCH_RESULT {json}" on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from pgqueuer import PgQueuer  # noqa: E402
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver  # noqa: E402
from pgqueuer.models import Job  # noqa: E402
from pgqueuer.queries import Queries  # noqa: E402

from bench.common import cpu_delta_ms_per, cpu_snapshot, emit_result, log, summary_ms  # noqa: E402

WATCH_INTERVAL = 0.02
SETTLE = 1.2
PRODUCER_CONNECTIONS = 8


class Bench:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.url = cfg["database_url"]
        self.dbname = self.url.rsplit("/", 1)[1].split("?")[0]
        self.pids = {"postgres": cfg.get("postgres_pid")}
        self.started: dict[bytes, float] = {}
        self.waiters: dict[bytes, asyncio.Future[float]] = {}

    async def open(self) -> None:
        setup = await asyncpg.connect(self.url)
        try:
            q = Queries(AsyncpgDriver(setup))
            if not await q.schema_is_installed():
                await q.install()
        finally:
            await setup.close()
        self.pool = await asyncpg.create_pool(
            self.url, min_size=PRODUCER_CONNECTIONS, max_size=PRODUCER_CONNECTIONS
        )
        self.producer = Queries(AsyncpgPoolDriver(self.pool))
        self.watch = await asyncpg.connect(self.url)
        self.admin = await asyncpg.connect(self.cfg["admin_url"])
        self.consumer_conn = await asyncpg.connect(self.url)
        self.pgq = PgQueuer.from_asyncpg_connection(self.consumer_conn)

        @self.pgq.entrypoint("one_step")
        async def one_step(job: Job) -> None:
            return None

        @self.pgq.entrypoint("latency")
        async def latency(job: Job) -> None:
            now = time.time()
            fut = self.waiters.get(job.payload or b"")
            if fut is not None and not fut.done():
                fut.set_result(now)

        self.consumer = asyncio.create_task(self.pgq.run())

    async def close(self) -> None:
        self.pgq.shutdown.set()
        try:
            await asyncio.wait_for(self.consumer, timeout=10)
        except (TimeoutError, Exception):
            self.consumer.cancel()
        for c in (self.watch, self.admin, self.consumer_conn):
            await c.close()
        await self.pool.close()

    async def _db(self) -> tuple[int, int]:
        row = await self.admin.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xids, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal"
        )
        # Transaction ids handed out: the committed writing transactions (nothing
        # else writes meanwhile). pg_stat_database's counters lag up to 10 s.
        return int(row["xids"]), int(row["wal"])

    async def wait_empty(self, entrypoint: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            left = await self.watch.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint
            )
            now = time.time()
            if left == 0:
                return now
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} {entrypoint} jobs still queued after {timeout:g} s")
            await asyncio.sleep(WATCH_INTERVAL)

    async def throughput(self, n: int, batched: bool) -> dict[str, Any]:
        payloads = [str(i).encode() for i in range(n)]
        inflight = int(self.cfg.get("trigger_inflight", 64))
        batch = int(self.cfg.get("batch_size", 1000))
        await asyncio.sleep(SETTLE)
        db0 = await self._db()
        cpu0 = cpu_snapshot(self.pids)
        t0 = time.time()
        if batched:
            chunks = iter([payloads[i : i + batch] for i in range(0, n, batch)])

            async def lane() -> None:
                for chunk in chunks:
                    await self.producer.enqueue(["one_step"] * len(chunk), chunk, [0] * len(chunk))

            await asyncio.gather(*(lane() for _ in range(2)))
            how = f"Queries.enqueue with lists of {batch}, 2 calls in flight"
        else:
            items = iter(payloads)

            async def lane() -> None:
                for p in items:
                    await self.producer.enqueue("one_step", p)

            await asyncio.gather(*(lane() for _ in range(inflight)))
            how = (
                f"Queries.enqueue, one call per job, {inflight} in flight over "
                f"{PRODUCER_CONNECTIONS} connections"
            )
        t1 = time.time()
        t_done = await self.wait_empty("one_step", 120 + n / 5)
        cpu1 = cpu_snapshot(self.pids)
        await asyncio.sleep(SETTLE)
        db1 = await self._db()
        cpu = cpu_delta_ms_per(cpu0, cpu1, n)
        cpu = {("pgqueuer process" if k == "bench driver" else k): v for k, v in cpu.items()}
        seconds = t_done - t0
        return {
            "n": n,
            "seconds": round(seconds, 3),
            "runs_per_s": round(n / seconds, 1),
            "trigger_per_s": round(n / (t1 - t0), 1),
            "how": how,
            "cpu_ms_per_run": cpu,
            "transactions_per_run": round((db1[0] - db0[0]) / n, 2),
            "wal_bytes_per_run": round((db1[1] - db0[1]) / n),
        }

    async def latency(self, samples: int, warmup: int = 5) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start, call = [], []
        for i in range(warmup + samples):
            key = f"lat-{i}".encode()
            fut: asyncio.Future[float] = loop.create_future()
            self.waiters[key] = fut
            t0 = time.time()
            await self.producer.enqueue("latency", key)
            t1 = time.time()
            began = await asyncio.wait_for(fut, timeout=30)
            del self.waiters[key]
            if i >= warmup:
                start.append(began - t0)
                call.append(t1 - t0)
        return {
            "samples": samples,
            "start_ms": summary_ms(start),
            "trigger_call_ms": summary_ms(call),
            "note": "no end-to-end figure: a pgqueuer job has no result to wait for",
        }


async def main_async(cfg: dict[str, Any]) -> dict[str, Any]:
    b = Bench(cfg)
    await b.open()
    sizes = cfg["sizes"]
    results: dict[str, Any] = {}
    plan = [
        ("a", lambda: b.throughput(sizes["a"], batched=False)),
        ("a_batch", lambda: b.throughput(sizes["a"], batched=True)),
        ("c", lambda: b.latency(sizes["c"])),
    ]
    try:
        for _ in range(5):  # warm-up
            await b.producer.enqueue("one_step", b"warm")
        await b.wait_empty("one_step", 30)
        for key, fn in plan:
            if key.split("_")[0] not in cfg["workloads"]:
                continue
            log(f"pgqueuer {key}: starting")
            try:
                results[key] = await fn()
            except Exception as exc:
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"pgqueuer {key}: {json.dumps(results[key])[:300]}")
    finally:
        await b.close()
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="JSON object from bench/run.py")
    cfg = json.loads(p.parse_args().config)
    workloads = asyncio.run(main_async(cfg))
    emit_result(
        {
            "versions": version("pgqueuer"),
            "settings": (
                f"pgqueuer {version('pgqueuer')}: consumer in-process, "
                "PgQueuer.run() defaults (batch_size 10, LISTEN/NOTIFY)"
            ),
            "workloads": workloads,
        }
    )


if __name__ == "__main__":
    main()
