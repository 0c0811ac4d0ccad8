"""Cairn's workloads a to g (CairnBench), run through the SDK's AsyncClient against
a started CairnCluster; completion is seen by polling the runs table."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Iterable
from typing import Any

from bench.cluster import CairnCluster
from bench.common import log, max_overlap, summary_ms
from bench.meter import Meter
from bench.run_tables import load_finished_runs, truncate_runs, vacuum_analyze
from bench.settings import (
    BATCH_INFLIGHT,
    BATCH_SIZE,
    FAILED,
    LIMITED_SLEEP,
    POLL_INTERVAL,
    TRIGGER_INFLIGHT,
)


def completion_timeout(n: int) -> float:
    """How long a workload of n runs (or steps) may take before the harness
    reports the rate so far: 2 minutes plus 5 per second."""
    return 120.0 + n / 5


def incomplete(completed: int, n: int) -> dict[str, Any]:
    if completed >= n:
        return {}
    return {
        "incomplete": f"only {completed:,} of {n:,} runs completed within "
        f"{completion_timeout(n):g} s; the rate is of those"
    }


class CairnBench:
    def __init__(
        self,
        cluster: CairnCluster,
        pool: Any,
        admin: Any,
        sizes: dict[str, int],
        postgres_pid: int | None,
        nats_pid: int | None,
        statements: bool = False,
        database: str = "cairn_bench",
    ) -> None:
        self.statements = statements
        self.database = database
        self.cluster = cluster
        self.pool = pool
        self.admin = admin
        self.sizes = sizes
        self.pids = {**cluster.pids(), "postgres": postgres_pid, "nats": nats_pid}
        self.client: Any = None

    def meter(self) -> Meter:
        return Meter(self.admin, self.database, self.pids, self.statements)

    async def __aenter__(self) -> CairnBench:
        from worker_sdk import AsyncClient

        self.client = AsyncClient(self.cluster.address)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.close()

    async def db_now(self) -> dt.datetime:
        return await self.pool.fetchval("SELECT clock_timestamp()")

    async def wait_done(
        self, task_id: str, since: dt.datetime, n: int, sample_queue: str | None = None
    ) -> tuple[float, int, int]:
        """Polls the runs table until n runs of task_id created since `since` are
        terminal. Returns (time.time() when seen, most executing seen on
        sample_queue, runs completed): fewer than n when the time allowed
        (completion_timeout(n)) ran out first. RuntimeError when a run failed."""
        timeout = completion_timeout(n)
        start = time.monotonic()
        deadline = start + timeout
        next_note = start + 15
        most = 0
        while True:
            row = await self.pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'completed') AS ok, "
                "count(*) FILTER (WHERE status = ANY($3::text[])) AS bad "
                "FROM runs WHERE namespace = 'default' AND task_id = $1 AND created_at >= $2",
                task_id,
                since,
                list(FAILED),
            )
            if sample_queue is not None:
                most = max(
                    most,
                    await self.pool.fetchval(
                        "SELECT count(*) FROM runs WHERE namespace = 'default' AND queue = $1 "
                        "AND status = 'executing'",
                        sample_queue,
                    ),
                )
            now = time.time()
            if row["bad"]:
                raise RuntimeError(f"{row['bad']} run(s) of {task_id} did not complete")
            if row["ok"] >= n:
                return now, most, row["ok"]
            mono = time.monotonic()
            if mono > deadline:
                self.cluster.check()
                log(
                    f"  {task_id}: only {row['ok']:,} of {n:,} completed within {timeout:g} s; "
                    "reporting the rate so far"
                )
                return now, most, row["ok"]
            if mono > next_note:
                log(f"  {task_id}: {row['ok']:,} of {n:,} completed")
                next_note = mono + 15
            await asyncio.sleep(POLL_INTERVAL)

    async def outputs(self, task_id: str, since: dt.datetime) -> list[Any]:
        rows = await self.pool.fetch(
            "SELECT output FROM runs WHERE namespace = 'default' AND task_id = $1 "
            "AND created_at >= $2 AND status = 'completed'",
            task_id,
            since,
        )
        return [json.loads(bytes(r["output"])) for r in rows]

    async def trigger_many(
        self, task_id: str, payloads: Iterable[Any], inflight: int = TRIGGER_INFLIGHT
    ) -> None:
        items = iter(payloads)

        async def lane() -> None:
            for payload in items:
                await self.client.trigger(task_id, payload)

        await asyncio.gather(*(lane() for _ in range(inflight)))

    async def batch_trigger_many(self, task_id: str, payloads: list[Any]) -> None:
        chunks = iter([payloads[i : i + BATCH_SIZE] for i in range(0, len(payloads), BATCH_SIZE)])

        async def lane() -> None:
            for chunk in chunks:
                await self.client.batch_trigger([(task_id, p) for p in chunk])

        await asyncio.gather(*(lane() for _ in range(BATCH_INFLIGHT)))

    async def wait_ready(self, timeout: float = 60, timed_steps: bool = False) -> None:
        """Until every worker registered and one run of each task completed
        (timed_steps, w's task, only when asked: an older tree's tasks lack it)."""
        deadline = time.monotonic() + timeout
        while await self.pool.fetchval("SELECT count(*) FROM workers") < self.cluster.n_workers:
            self.cluster.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not register")
            await asyncio.sleep(0.05)
        for task_id, payload in [
            ("one_step", {}),
            ("ten_steps", {}),
            ("latency", {}),
            ("many_steps", {"n": 3}),
            ("limited", {"sleep": 0}),
            ("drain", {}),
            *([("timed_steps", {"n": 3})] if timed_steps else []),
        ]:
            run = await self.client.trigger(task_id, payload)
            done = await self.client.wait(run.id, timeout=30)
            if done.status != "completed":
                raise RuntimeError(f"warm-up run of {task_id} ended {done.status}: {done.error}")

    # -- the workloads --

    async def throughput(
        self, task_id: str, n: int, batch: bool = False, steps_per_run: int = 1
    ) -> dict[str, Any]:
        payloads = [{"i": i} for i in range(n)]
        async with self.meter() as m:
            since = await self.db_now()
            t0 = time.time()
            if batch:
                await self.batch_trigger_many(task_id, payloads)
            else:
                await self.trigger_many(task_id, payloads)
            t_triggered = time.time()
            t_done, _, completed = await self.wait_done(task_id, since, n)
        seconds = t_done - t0
        out = {
            "n": n,
            "seconds": round(seconds, 3),
            "runs_per_s": round(completed / seconds, 1),
            **incomplete(completed, n),
            "trigger_per_s": round(n / (t_triggered - t0), 1),
            "how": (
                f"batch_trigger, {BATCH_SIZE} per call, {BATCH_INFLIGHT} calls in flight"
                if batch
                else f"TriggerRun, {TRIGGER_INFLIGHT} calls in flight"
            ),
            **m.per(completed),
        }
        if steps_per_run > 1:
            out["steps_per_s"] = round(n * steps_per_run / seconds, 1)
        return out

    async def latency(self, samples: int, warmup: int = 5) -> dict[str, Any]:
        start, e2e, call = [], [], []
        for i in range(warmup + samples):
            t0 = time.time()
            run = await self.client.trigger("latency", {"i": i})
            t1 = time.time()
            done = await self.client.wait(run.id, timeout=30)
            t2 = time.time()
            if done.status != "completed":
                raise RuntimeError(f"latency run ended {done.status}: {done.error}")
            if i >= warmup:
                start.append(float(done.output) - t0)
                e2e.append(t2 - t0)
                call.append(t1 - t0)
        return {
            "samples": samples,
            "start_ms": summary_ms(start),
            "end_to_end_ms": summary_ms(e2e),
            "trigger_call_ms": summary_ms(call),
        }

    async def steps(self, n: int) -> dict[str, Any]:
        async with self.meter() as m:
            t0 = time.time()
            run = await self.client.trigger("many_steps", {"n": n})
            done = await self.client.wait(run.id, timeout=completion_timeout(n))
            t1 = time.time()
        if done.status != "completed":
            raise RuntimeError(f"many_steps run ended {done.status}: {done.error}")
        body = done.output["body_end"] - done.output["body_start"]
        return {
            "steps": n,
            "us_per_step": round(body / n * 1e6, 1),
            "end_to_end_us_per_step": round((t1 - t0) / n * 1e6, 1),
            **{k.replace("per_run", "per_step"): v for k, v in m.per(n).items()},
        }

    async def limited(self, n: int) -> dict[str, Any]:
        payloads = [{"i": i, "sleep": LIMITED_SLEEP} for i in range(n)]
        async with self.meter() as m:
            since = await self.db_now()
            t0 = time.time()
            await self.trigger_many("limited", payloads)
            t_done, sampled, completed = await self.wait_done(
                "limited", since, n, sample_queue="bench-limited"
            )
        outs = await self.outputs("limited", since)
        seconds = t_done - t0
        return {
            "n": n,
            "limit": 5,
            "sleep_s": LIMITED_SLEEP,
            "seconds": round(seconds, 3),
            "runs_per_s": round(completed / seconds, 1),
            **incomplete(completed, n),
            "max_running": max_overlap((o["start"], o["end"]) for o in outs),
            "max_executing_sampled": sampled,
            **m.per(completed),
        }

    async def drain(self, n: int) -> dict[str, Any]:
        await self.client.pause_queue("bench-drain")
        since = await self.db_now()
        payloads = [{"i": i} for i in range(n)]
        await self.batch_trigger_many("drain", payloads)
        async with self.meter() as m:
            t0 = time.time()
            await self.client.resume_queue("bench-drain")
            t_done, _, completed = await self.wait_done("drain", since, n)
        seconds = t_done - t0
        return {
            "n": n,
            "seconds": round(seconds, 3),
            "runs_per_s": round(completed / seconds, 1),
            **incomplete(completed, n),
            "how": "queued while the queue was paused (batch_trigger), timed from resume",
            **m.per(completed),
        }

    async def flatness(self, rows: int, samples: int, steps: int) -> dict[str, Any]:
        await truncate_runs(self.pool)
        base_c = await self.latency(samples)
        base_d = await self.steps(steps)
        t0 = time.time()
        counts = await load_finished_runs(self.pool, rows)
        load_s = time.time() - t0
        t1 = time.time()
        await vacuum_analyze(self.pool)
        vac_s = time.time() - t1
        full_c = await self.latency(samples)
        full_d = await self.steps(steps)
        size = await self.pool.fetchval("SELECT pg_database_size(current_database())")

        def ratio(a: float, b: float) -> float:
            return round(b / a, 3) if a else float("nan")

        return {
            "rows": rows,
            "loaded": counts,
            "load_seconds": round(load_s, 1),
            "vacuum_analyze_seconds": round(vac_s, 1),
            "database_bytes": size,
            "without": {"c": base_c, "d": base_d},
            "with": {"c": full_c, "d": full_d},
            "ratio_start_p50": ratio(base_c["start_ms"]["p50"], full_c["start_ms"]["p50"]),
            "ratio_start_p99": ratio(base_c["start_ms"]["p99"], full_c["start_ms"]["p99"]),
            "ratio_end_to_end_p50": ratio(base_c["end_to_end_ms"]["p50"], full_c["end_to_end_ms"]["p50"]),
            "ratio_us_per_step": ratio(base_d["us_per_step"], full_d["us_per_step"]),
        }
