"""The benchmark's workloads on DBOS Transact (PyPI `dbos`), run by bench/run.py
with bench/.venv-peers/bin/python:

    python bench/peers/dbos_bench.py --config '{"database_url": ..., "sizes": ..., ...}'

DBOS is a library: the workflows run in this process, on DBOS queues, with the
system database on the benchmark's PostgreSQL (database dbos_bench). The
workflows and steps are async, like Cairn's tasks, and do the same trivial work.
Each workload gets its own queue, registered just before it and deleted after
it (every registered queue is polled by its own thread), polled every 10 ms
(`polling_interval_sec=0.01`; DBOS's default is 1 s); results are read with
`get_result(polling_interval_sec=0.01)`. Completion is seen the same way as for
Cairn: a query of the workflow_status table every 20 ms.

It prints one line "BENCH_RESULT {json}" on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from dbos import DBOS, DBOSConfig  # noqa: E402

from bench.common import cpu_delta_ms_per, cpu_snapshot, emit_result, log, max_overlap, summary_ms  # noqa: E402

POLL = 0.01
WATCH_INTERVAL = 0.02
SETTLE = 1.2
FAILED = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@DBOS.step(name="noop")
async def noop(i: int) -> int:
    return i


@DBOS.workflow(name="one_step")
async def one_step(i: int) -> int:
    return await noop(0)


@DBOS.workflow(name="ten_steps")
async def ten_steps(i: int) -> int:
    total = 0
    for k in range(10):
        total += await noop(k)
    return total


@DBOS.workflow(name="many_steps")
async def many_steps(n: int) -> dict[str, float]:
    t0 = time.time()
    for k in range(n):
        await noop(k)
    return {"steps": n, "body_start": t0, "body_end": time.time()}


@DBOS.workflow(name="latency")
async def latency(i: int) -> float:
    return time.time()


@DBOS.workflow(name="limited")
async def limited(sleep: float) -> dict[str, float]:
    start = time.time()
    await noop(0)
    await asyncio.sleep(sleep)
    return {"start": start, "end": time.time()}


def incomplete(done: int, n: int) -> dict[str, Any]:
    return (
        {} if done >= n else {"incomplete": f"only {done:,} of {n:,} completed in time; the rate is of those"}
    )


class Bench:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.sizes = cfg["sizes"]
        self.url = cfg["database_url"]
        self.dbname = self.url.rsplit("/", 1)[1].split("?")[0]
        self.pids = {"postgres": cfg.get("postgres_pid")}
        self.pool: asyncpg.Pool | None = None
        self.admin: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)
        self.admin = await asyncpg.connect(self.cfg["admin_url"])

    async def close(self) -> None:
        if self.pool:
            await self.pool.close()
        if self.admin:
            await self.admin.close()

    # -- measuring --

    async def _db(self) -> tuple[int, int]:
        row = await self.admin.fetchrow(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xids, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal"
        )
        # Transaction ids handed out: the committed writing transactions (nothing
        # else writes meanwhile). pg_stat_database's counters lag up to 10 s.
        return int(row["xids"]), int(row["wal"])

    async def meter_start(self) -> dict[str, Any]:
        await asyncio.sleep(SETTLE)
        return {"db": await self._db(), "cpu": cpu_snapshot(self.pids)}

    async def meter_end(self, m0: dict[str, Any], count: int) -> dict[str, Any]:
        cpu1 = cpu_snapshot(self.pids)
        await asyncio.sleep(SETTLE)
        db1 = await self._db()
        cpu = cpu_delta_ms_per(m0["cpu"], cpu1, count)
        cpu = {("dbos process" if k == "bench driver" else k): v for k, v in cpu.items()}
        return {
            "cpu_ms_per_run": cpu,
            "transactions_per_run": round((db1[0] - m0["db"][0]) / max(1, count), 2),
            "wal_bytes_per_run": round((db1[1] - m0["db"][1]) / max(1, count)),
        }

    async def wait_done(self, queue: str, since_ms: int, n: int) -> tuple[float, int]:
        """(time when n workflows on queue succeeded, how many did): fewer than n when
        the time allowed ran out first (2 minutes plus 5 per second, as for Cairn)."""
        timeout = 120.0 + n / 5
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 15
        while True:
            row = await self.pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'SUCCESS') AS ok, "
                "count(*) FILTER (WHERE status = ANY($3::text[])) AS bad "
                "FROM dbos.workflow_status WHERE queue_name = $1 AND created_at >= $2",
                queue,
                since_ms,
                list(FAILED),
            )
            now = time.time()
            if row["bad"]:
                raise RuntimeError(f"{row['bad']} workflow(s) on {queue} failed")
            if row["ok"] >= n:
                return now, row["ok"]
            if time.monotonic() > deadline:
                log(f"  {queue}: only {row['ok']:,} of {n:,} completed within {timeout:g} s")
                return now, row["ok"]
            if time.monotonic() > next_note:
                log(f"  {queue}: {row['ok']:,} of {n:,} completed")
                next_note = time.monotonic() + 15
            await asyncio.sleep(WATCH_INTERVAL)

    # -- queues --

    async def queue(self, name: str, **limits: Any) -> str:
        await DBOS.register_queue_async(
            name, polling_interval_sec=POLL, on_conflict="always_update", **limits
        )
        return name

    async def drop(self, name: str) -> None:
        await DBOS.delete_queue_async(name)

    async def enqueue_many(self, queue: str, fn: Any, args: list[Any]) -> list[Any]:
        """Enqueues with `trigger_inflight` calls in flight; the handles, in order."""
        handles: list[Any] = [None] * len(args)
        items = iter(enumerate(args))

        async def lane() -> None:
            for i, a in items:
                handles[i] = await DBOS.enqueue_workflow_async(queue, fn, a)

        await asyncio.gather(*(lane() for _ in range(self.cfg.get("trigger_inflight", 64))))
        return handles

    # -- workloads --

    async def throughput(self, key: str, fn: Any, n: int, steps: int = 1) -> dict[str, Any]:
        q = await self.queue(f"bench-{key}")
        try:
            m0 = await self.meter_start()
            since = int(time.time() * 1000) - 5
            t0 = time.time()
            await self.enqueue_many(q, fn, list(range(n)))
            t1 = time.time()
            t_done, done = await self.wait_done(q, since, n)
            m = await self.meter_end(m0, max(1, done))
        finally:
            await self.drop(q)
        seconds = t_done - t0
        out = {
            "n": n,
            "seconds": round(seconds, 3),
            "runs_per_s": round(done / seconds, 1),
            **incomplete(done, n),
            "trigger_per_s": round(n / (t1 - t0), 1),
            "how": f"DBOS.enqueue_workflow_async, {self.cfg.get('trigger_inflight', 64)} in flight",
            **m,
        }
        if steps > 1:
            out["steps_per_s"] = round(n * steps / seconds, 1)
        return out

    async def latency(self, samples: int, queue_name: str = "bench-c", warmup: int = 5) -> dict[str, Any]:
        q = await self.queue(queue_name)
        start, e2e, call = [], [], []
        try:
            for i in range(warmup + samples):
                t0 = time.time()
                h = await DBOS.enqueue_workflow_async(q, latency, i)
                t1 = time.time()
                began = await h.get_result(polling_interval_sec=POLL)
                t2 = time.time()
                if i >= warmup:
                    start.append(began - t0)
                    e2e.append(t2 - t0)
                    call.append(t1 - t0)
        finally:
            await self.drop(q)
        return {
            "samples": samples,
            "start_ms": summary_ms(start),
            "end_to_end_ms": summary_ms(e2e),
            "trigger_call_ms": summary_ms(call),
        }

    async def steps(self, n: int, queue_name: str = "bench-d") -> dict[str, Any]:
        q = await self.queue(queue_name)
        try:
            t0 = time.time()
            h = await DBOS.enqueue_workflow_async(q, many_steps, n)
            out = await h.get_result(polling_interval_sec=POLL)
            t1 = time.time()
        finally:
            await self.drop(q)
        body = out["body_end"] - out["body_start"]
        return {
            "steps": n,
            "us_per_step": round(body / n * 1e6, 1),
            "end_to_end_us_per_step": round((t1 - t0) / n * 1e6, 1),
        }

    async def limited(self, n: int) -> dict[str, Any]:
        sleep = float(self.cfg.get("limited_sleep", 0.01))
        q = await self.queue("bench-e", global_concurrency=5)
        try:
            m0 = await self.meter_start()
            since = int(time.time() * 1000) - 5
            t0 = time.time()
            handles = await self.enqueue_many(q, limited, [sleep] * n)
            t_done, done = await self.wait_done(q, since, n)
            m = await self.meter_end(m0, max(1, done))
            outs = (
                (await asyncio.gather(*(h.get_result(polling_interval_sec=POLL) for h in handles)))
                if done >= n
                else []
            )
        finally:
            await self.drop(q)
        seconds = t_done - t0
        return {
            "n": n,
            "limit": 5,
            "sleep_s": sleep,
            "seconds": round(seconds, 3),
            "runs_per_s": round(done / seconds, 1),
            **incomplete(done, n),
            "max_running": max_overlap((o["start"], o["end"]) for o in outs),
            "how": "DBOS.register_queue(global_concurrency=5)",
            **m,
        }

    async def drain(self, n: int) -> dict[str, Any]:
        name = "bench-f"
        since = int(time.time() * 1000) - 5
        # enqueued onto a queue no thread polls yet: registering it starts the drain
        await self.enqueue_many(name, one_step, list(range(n)))
        m0 = await self.meter_start()
        t0 = time.time()
        await self.queue(name)
        try:
            t_done, done = await self.wait_done(name, since, n)
            m = await self.meter_end(m0, max(1, done))
        finally:
            await self.drop(name)
        seconds = t_done - t0
        return {
            "n": n,
            "seconds": round(seconds, 3),
            "runs_per_s": round(done / seconds, 1),
            **incomplete(done, n),
            "how": "enqueued before the queue was registered, timed from register_queue",
            **m,
        }

    async def flatness(self, rows: int, samples: int, steps: int) -> dict[str, Any]:
        await self.truncate()
        base_c = await self.latency(samples, "bench-g-c0")
        base_d = await self.steps(steps, "bench-g-d0")
        t0 = time.time()
        loaded = await self.load(rows)
        load_s = time.time() - t0
        t1 = time.time()
        await self.vacuum()
        vac_s = time.time() - t1
        full_c = await self.latency(samples, "bench-g-c1")
        full_d = await self.steps(steps, "bench-g-d1")

        def ratio(a: float, b: float) -> float:
            return round(b / a, 3) if a else float("nan")

        return {
            "rows": rows,
            "loaded": loaded,
            "load_seconds": round(load_s, 1),
            "vacuum_analyze_seconds": round(vac_s, 1),
            "how": "copies of a finished 1-step workflow's rows (every dbos table keyed "
            "by workflow_uuid), INSERT ... SELECT generate_series, over 30 days",
            "without": {"c": base_c, "d": base_d},
            "with": {"c": full_c, "d": full_d},
            "ratio_start_p50": ratio(base_c["start_ms"]["p50"], full_c["start_ms"]["p50"]),
            "ratio_start_p99": ratio(base_c["start_ms"]["p99"], full_c["start_ms"]["p99"]),
            "ratio_end_to_end_p50": ratio(base_c["end_to_end_ms"]["p50"], full_c["end_to_end_ms"]["p50"]),
            "ratio_us_per_step": ratio(base_d["us_per_step"], full_d["us_per_step"]),
        }

    async def workflow_tables(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'dbos' "
            "AND column_name = 'workflow_uuid' ORDER BY table_name"
        )
        # workflow_status first: the others refer to it
        return sorted((r["table_name"] for r in rows), key=lambda t: (t != "workflow_status", t))

    async def truncate(self) -> None:
        """Removes every finished workflow (DBOS is idle), like Cairn's g."""
        tables = await self.workflow_tables()
        await self.pool.execute("TRUNCATE " + ", ".join(f"dbos.{t}" for t in tables) + " CASCADE")
        await self.vacuum()

    async def vacuum(self) -> None:
        for t in await self.workflow_tables():
            await self.pool.execute(f"VACUUM ANALYZE dbos.{t}")

    async def load(self, rows: int) -> dict[str, int]:
        """`rows` copies of one finished 1-step workflow, in every dbos table that
        holds rows by workflow_uuid, with new ids and the epoch-ms time columns
        spread over the 30 days before now."""
        q = await self.queue("bench-g-template")
        try:
            h = await DBOS.enqueue_workflow_async(q, one_step, 0)
            await h.get_result(polling_interval_sec=POLL)
        finally:
            await self.drop(q)
        template = h.get_workflow_id()
        span_ms = 30 * 86400 * 1000
        loaded: dict[str, int] = {}
        chunk = 100_000
        for table in await self.workflow_tables():
            cols = await self.pool.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'dbos' AND table_name = $1 AND is_generated = 'NEVER' "
                "AND coalesce(column_default, '') NOT LIKE 'nextval%' ORDER BY ordinal_position",
                table,
            )
            names, exprs = [], []
            for c in cols:
                name, kind = c["column_name"], c["data_type"]
                names.append(f'"{name}"')
                if name == "workflow_uuid":
                    exprs.append("'bench-load-' || g")
                elif kind == "bigint" and (
                    name.endswith(("_at", "_epoch_ms")) or name == "retention_timestamp"
                ):
                    exprs.append(f't."{name}" - ({span_ms}::bigint * ($2::bigint - g) / $2)')
                else:
                    exprs.append(f't."{name}"')
            if not await self.pool.fetchval(
                f"SELECT count(*) FROM dbos.{table} WHERE workflow_uuid = $1", template
            ):
                continue
            for lo in range(1, rows + 1, chunk):
                hi = min(rows, lo + chunk - 1)
                await self.pool.execute(
                    f"INSERT INTO dbos.{table} ({', '.join(names)}) "
                    f"SELECT {', '.join(exprs)} FROM dbos.{table} t, "
                    f"generate_series($3::bigint, $4::bigint) g WHERE t.workflow_uuid = $1",
                    template,
                    rows,
                    lo,
                    hi,
                )
            loaded[table] = await self.pool.fetchval(f"SELECT count(*) FROM dbos.{table}")
            log(f"dbos g: dbos.{table} now holds {loaded[table]:,} rows")
        return loaded


async def main_async(cfg: dict[str, Any]) -> dict[str, Any]:
    b = Bench(cfg)
    await b.open()
    sizes = cfg["sizes"]
    want = cfg["workloads"]
    results: dict[str, Any] = {}
    plan = [
        ("a", lambda: b.throughput("a", one_step, sizes["a"])),
        ("b", lambda: b.throughput("b", ten_steps, sizes["b"], steps=10)),
        ("c", lambda: b.latency(sizes["c"])),
        ("d", lambda: b.steps(sizes["d"])),
        ("e", lambda: b.limited(sizes["e"])),
        ("f", lambda: b.drain(sizes["f"])),
        ("g", lambda: b.flatness(sizes["g"], sizes["c"], sizes["d"])),
    ]
    try:
        # warm-up: one of each workflow
        q = await b.queue("bench-warmup")
        for fn, arg in ((one_step, 0), (ten_steps, 0), (latency, 0), (many_steps, 3), (limited, 0.0)):
            h = await DBOS.enqueue_workflow_async(q, fn, arg)
            await h.get_result(polling_interval_sec=POLL)
        await b.drop(q)
        for key, fn in plan:
            if key not in want:
                continue
            log(f"dbos {key}: starting")
            try:
                results[key] = await fn()
            except Exception as exc:
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"dbos {key}: {json.dumps(results[key])[:300]}")
    finally:
        await b.close()
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="JSON object from bench/run.py")
    cfg = json.loads(p.parse_args().config)
    config: DBOSConfig = {
        "name": "cairn-bench",
        "system_database_url": cfg["database_url"],
        "log_level": "WARNING",
        "application_version": "bench",
    }
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config=config)
    DBOS.launch()
    try:
        workloads = asyncio.run(main_async(cfg))
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=5)
    emit_result(
        {
            "versions": version("dbos"),
            "settings": (
                f"dbos {version('dbos')}: async workflows and steps, in-process "
                f"on DBOS queues polled every {POLL * 1000:g} ms "
                f"(default 1 s); get_result polled every {POLL * 1000:g} ms"
            ),
            "workloads": workloads,
        }
    )


if __name__ == "__main__":
    os.environ.setdefault("DBOS__VMID", "bench")
    main()
