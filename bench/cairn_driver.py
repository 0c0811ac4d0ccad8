"""The Cairn part of an invocation: start the cluster, run the chosen workloads a to g
and w on it one after the other (a failing workload is recorded and the rest still
run), stop it."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import CairnCluster
from bench.common import log
from bench.processes import Servers, interrupted
from bench.settings import REPO, WATCH_STEPS
from bench.watchers import run_watchers
from bench.workloads import CairnBench

CAIRN_WORKLOADS = "abcdefgw"


async def run_cairn(
    args: argparse.Namespace,
    servers: Servers,
    urls: dict[str, str],
    logs: Path,
    sizes: dict[str, int],
    results: dict[str, Any],
    tree: Path = REPO,
    database: str = "cairn_bench",
) -> None:
    """The chosen workloads on a cluster started from `tree`, on `database`."""
    import asyncpg

    wanted = [w for w in args.only if w in CAIRN_WORKLOADS]
    if not wanted:
        return
    logs.mkdir(parents=True, exist_ok=True)
    cluster = CairnCluster(
        logs,
        urls[database],
        servers.nats.url,
        args.workers,
        args.slots,
        args.retention_days,
        args.prune_seconds,
        tree=tree,
        watch_frontend=args.watch_frontend == "own" and "w" in wanted,
    )
    log(
        f"cairn: starting history, matching, frontend and {args.workers} worker(s) of {args.slots} "
        f"slots from {cluster.tree}"
    )
    try:
        cluster.start()
        pool = await asyncpg.create_pool(urls[database], min_size=1, max_size=3)
        admin = await asyncpg.connect(urls["postgres"])
        try:
            if args.statements:
                await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            async with CairnBench(
                cluster, pool, admin, sizes, servers.pg.pid, servers.nats.pid, args.statements, database
            ) as b:
                await b.wait_ready(timed_steps="w" in wanted)
                plan: list[tuple[str, str, Callable[[], Any]]] = [
                    (
                        "a",
                        f"{sizes['a']:,} 1-step runs, TriggerRun",
                        lambda: b.throughput("one_step", sizes["a"]),
                    ),
                    (
                        "a_batch",
                        f"{sizes['a']:,} 1-step runs, batch_trigger",
                        lambda: b.throughput("one_step", sizes["a"], batch=True),
                    ),
                    (
                        "b",
                        f"{sizes['b']:,} 10-step runs",
                        lambda: b.throughput("ten_steps", sizes["b"], steps_per_run=10),
                    ),
                    ("c", f"{sizes['c']} latency samples", lambda: b.latency(sizes["c"])),
                    ("d", f"one run of {sizes['d']:,} steps", lambda: b.steps(sizes["d"])),
                    ("e", f"{sizes['e']} runs on a queue of limit 5", lambda: b.limited(sizes["e"])),
                    ("f", f"drain of {sizes['f']:,} queued runs", lambda: b.drain(sizes["f"])),
                    (
                        "g",
                        f"flatness with {sizes['g']:,} finished runs",
                        lambda: b.flatness(sizes["g"], sizes["c"], sizes["d"]),
                    ),
                    (
                        "w",
                        f"{args.watchers} watchers against none, {args.rounds} rounds",
                        lambda: run_watchers(
                            b,
                            args.rounds,
                            args.watchers,
                            args.watch_steps,
                            sizes["w_one"],
                            # as many steps in flight as with WATCH_STEPS-step runs
                            max(args.watchers, sizes["w_flight"] * WATCH_STEPS // args.watch_steps),
                            args.watch_via,
                            args.step_gap_ms,
                        ),
                    ),
                ]
                for key, what, fn in plan:
                    if key.split("_")[0] not in wanted:
                        continue
                    log(f"cairn {key}: {what}")
                    try:
                        results[key] = await fn()
                    except Exception as exc:  # one workload failing must not lose the rest
                        if interrupted():
                            raise asyncio.CancelledError from None  # asyncio.run is unwinding
                        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"cairn {key}: {_brief(results[key])}")
                    cluster.check()
        finally:
            await pool.close()
            await admin.close()
    finally:
        log("cairn: stopping")
        cluster.stop()


def _brief(r: dict[str, Any]) -> str:
    keys = (
        "error",
        "runs_per_s",
        "steps_per_s",
        "trigger_per_s",
        "us_per_step",
        "max_running",
        "ratio_start_p50",
        "ratio_us_per_step",
    )
    parts = [f"{k}={r[k]}" for k in keys if k in r]
    for c in r.get("compared", []):
        parts.append(f"{c['figure']}: with/without {c['ratio']}")
    if "start_ms" in r:
        parts.append(f"start p50={r['start_ms']['p50']:.2f} ms p99={r['start_ms']['p99']:.2f} ms")
    return ", ".join(parts)
