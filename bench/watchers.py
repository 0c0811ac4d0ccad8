"""Workload w: what live watchers cost the runs they watch (issue 12: "50 concurrent
watchers do not slow the run's steps by more than 10 %").

Runs of `steps` trivial steps (bench/tasks.py `timed_steps`, which times each step
from the call to its record acknowledged) with no watcher and with `watchers`
watchers, the two conditions alternating in one invocation (0, W, W, 0, 0, W, ...),
`rounds` times each, on one cluster. Each condition has two parts:

- one run at a time, `watchers` watchers on that run: the run is triggered with a
  DELAY (0.1 s) delay, every watcher is opened and has its first update (the run's
  `triggered` event) before the run starts, so all of them watch every step (the
  runs where they took longer are counted: late_attach);
- `lanes` runs in flight (one lane triggers a run, waits for its result with
  WaitRun, and starts the next), with one watcher per lane on the lane's run:
  `lanes` watchers at once on the runs being measured. A lane does not wait for
  its watcher's last update (which the feed's pace may hold back) before its
  next run: runs/s counts runs, and the watchers' lag is reported apart.

A watcher is `AsyncClient.watch` (RunService.WatchRun over gRPC, one channel for all
watchers) or, with --watch-via sse, `GET /v1/runs/{id}/watch` on the frontend's HTTP
port (httpx, one connection per watcher); the watchers run in the bench driver's
process, so its CPU figure includes theirs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from bench.common import log, quantile, summary_ms
from bench.workloads import CairnBench, completion_timeout

# The one-at-a-time run's start delay: time for its watchers to attach (50 take
# about 30 ms here, counted from the trigger call); a run whose watchers took
# longer is counted (late_attach, so it may count a run that had not started yet).
DELAY = 0.1


class WatcherPool:
    """Opens watchers on runs; each reads its run's updates to the end and keeps
    how many it saw and each step event's lag (received minus the event's time)."""

    def __init__(self, bench: CairnBench, via: str) -> None:
        self.bench = bench
        self.via = via
        self.client: Any = None
        self.http: Any = None
        self.lag_s: list[float] = []
        self.updates = 0

    async def __aenter__(self) -> WatcherPool:
        if self.via == "sse":
            import httpx

            self.http = httpx.AsyncClient(
                base_url=f"http://{self.bench.cluster.watch_http_address}",
                headers={"authorization": f"Bearer {self.bench.cluster.api_key}"},
                timeout=httpx.Timeout(60.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            )
        else:
            from worker_sdk import AsyncClient

            self.client = AsyncClient(self.bench.cluster.watch_address)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.client is not None:
            await self.client.close()

    def reset(self) -> None:
        self.lag_s = []
        self.updates = 0

    def _seen(self, event_type: str, at: dt.datetime | None, first: asyncio.Event) -> None:
        now = time.time()
        self.updates += 1
        first.set()
        if event_type == "step_recorded" and at is not None:
            if at.tzinfo is None:
                at = at.replace(tzinfo=dt.UTC)
            self.lag_s.append(now - at.timestamp())

    async def _grpc(self, run_id: str, first: asyncio.Event) -> None:
        async for update in self.client.watch(run_id):
            self._seen(update.event.type, update.event.at, first)

    async def _sse(self, run_id: str, first: asyncio.Event) -> None:
        async with self.http.stream("GET", f"/v1/runs/{run_id}/watch") as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("event: error"):
                    raise RuntimeError(f"SSE watch of {run_id} ended with an error")
                if line.startswith("data:"):
                    event = json.loads(line[5:])["event"]
                    at = event.get("at")
                    self._seen(
                        event["type"],
                        dt.datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None,
                        first,
                    )

    def open(self, run_id: str) -> tuple[asyncio.Task[None], asyncio.Event]:
        """A watcher on run_id, and an event set at its first update."""
        first = asyncio.Event()
        coro = self._sse(run_id, first) if self.via == "sse" else self._grpc(run_id, first)
        return asyncio.ensure_future(coro), first


async def _durations(bench: CairnBench, run_ids: list[str]) -> list[float]:
    """Attempt start to finish of each run, in seconds (PostgreSQL's clock)."""
    rows = await bench.pool.fetch(
        "SELECT extract(epoch FROM finished_at - started_at)::float8 AS s FROM runs "
        "WHERE id = ANY($1::uuid[]) AND status = 'completed'",
        run_ids,
    )
    return [r["s"] for r in rows]


def _step_figures(outputs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    step_s = [us / 1e6 for o in outputs for us in o["step_us"]]
    body = sorted((o["body_end"] - o["body_start"]) / steps * 1e6 for o in outputs)
    by_index = [sorted(o["step_us"][i] for o in outputs) for i in range(steps)]
    return {
        "step_ms": summary_ms(step_s),
        "us_per_step_p50": round(quantile(body, 0.5), 1),
        # where in the run the time goes: each step's p50 by its position
        "step_us_p50_by_position": [round(quantile(us, 0.5)) for us in by_index],
    }


async def _finish(bench: CairnBench, run_id: str, timeout: float) -> dict[str, Any]:
    done = await bench.client.wait(run_id, timeout=timeout)
    if done.status != "completed":
        raise RuntimeError(f"timed_steps run ended {done.status}: {done.error}")
    return dict(done.output)


async def one_at_a_time(
    bench: CairnBench, pool: WatcherPool, n_watchers: int, runs: int, steps: int, gap_ms: float
) -> dict[str, Any]:
    pool.reset()
    outputs, ids, attach_s = [], [], []
    async with bench.meter() as m:
        for _ in range(runs):
            t0 = time.monotonic()
            run = await bench.client.trigger("timed_steps", {"n": steps, "gap_ms": gap_ms}, delay=DELAY)
            opened = [pool.open(run.id) for _ in range(n_watchers)]
            if opened:
                await asyncio.wait_for(asyncio.gather(*(first.wait() for _, first in opened)), 30)
                attach_s.append(time.monotonic() - t0)
            outputs.append(await _finish(bench, run.id, completion_timeout(steps)))
            await asyncio.wait_for(asyncio.gather(*(task for task, _ in opened)), 30)
            ids.append(run.id)
    return {
        **m.per(runs),
        "runs": runs,
        **_step_figures(outputs, steps),
        "run_ms": summary_ms(await _durations(bench, ids)),
        "watcher_updates": pool.updates,
        "watcher_lag_ms": summary_ms(pool.lag_s) if pool.lag_s else {"n": 0},
        "attach_ms": summary_ms(attach_s) if attach_s else {"n": 0},
        "late_attach": sum(s > DELAY for s in attach_s),
        # wall clock, for timelines: (body start, body end, its steps µs)
        "bodies": [(o["body_start"], o["body_end"], o["step_us"]) for o in outputs],
    }


async def in_flight(
    bench: CairnBench, pool: WatcherPool, watched: bool, runs: int, lanes: int, steps: int, gap_ms: float
) -> dict[str, Any]:
    pool.reset()
    outputs: list[dict[str, Any]] = []
    ids: list[str] = []
    result_s: list[float] = []
    todo = iter(range(runs))
    watchers: list[asyncio.Task[None]] = []

    async def lane() -> None:
        for _ in todo:
            t0 = time.time()
            run = await bench.client.trigger("timed_steps", {"n": steps, "gap_ms": gap_ms})
            if watched:
                watchers.append(pool.open(run.id)[0])
            outputs.append(await _finish(bench, run.id, completion_timeout(steps)))
            result_s.append(time.time() - t0)
            ids.append(run.id)

    async with bench.meter() as m:
        t0 = time.time()
        await asyncio.gather(*(lane() for _ in range(lanes)))
        seconds = time.time() - t0
        await asyncio.wait_for(asyncio.gather(*watchers), 30)  # each to its run's last update
    return {
        "runs": runs,
        "lanes": lanes,
        "seconds": round(seconds, 3),
        "runs_per_s": round(runs / seconds, 1),
        "steps_per_s": round(runs * steps / seconds, 1),
        **_step_figures(outputs, steps),
        "trigger_to_result_ms": summary_ms(result_s),
        "run_ms": summary_ms(await _durations(bench, ids)),
        "watcher_updates": pool.updates,
        "watcher_lag_ms": summary_ms(pool.lag_s) if pool.lag_s else {"n": 0},
        **m.per(runs),
    }


# The figures compared between the two conditions: (label, part, path, unit, higher is better)
COMPARED = (
    ("one run, step record p50", "one", ("step_ms", "p50"), "ms", False),
    ("one run, step record p99", "one", ("step_ms", "p99"), "ms", False),
    ("one run, µs per step (body)", "one", ("us_per_step_p50",), "µs", False),
    ("one run, attempt start to finish p50", "one", ("run_ms", "p50"), "ms", False),
    ("one run, CPU per run (all processes)", "one", ("cpu_ms_per_run", "total"), "ms", False),
    ("in flight, runs/s", "flight", ("runs_per_s",), "runs/s", True),
    ("in flight, step record p50", "flight", ("step_ms", "p50"), "ms", False),
    ("in flight, step record p99", "flight", ("step_ms", "p99"), "ms", False),
    ("in flight, trigger to result p50", "flight", ("trigger_to_result_ms", "p50"), "ms", False),
    ("in flight, CPU per run (all processes)", "flight", ("cpu_ms_per_run", "total"), "ms", False),
)


def _dig(d: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def compare(rounds: list[dict[str, Any]], n_watchers: int) -> list[dict[str, Any]]:
    """Per compared figure: each round's value without and with watchers, the
    medians and their ratio (with / without)."""
    out = []
    for label, part, path, unit, higher in COMPARED:
        a = [_dig(r["parts"][part], path) for r in rounds if r["watchers"] == 0]
        b = [_dig(r["parts"][part], path) for r in rounds if r["watchers"] == n_watchers]
        a = [v for v in a if isinstance(v, (int, float))]
        b = [v for v in b if isinstance(v, (int, float))]
        ma, mb = quantile(sorted(a), 0.5), quantile(sorted(b), 0.5)
        out.append(
            {
                "figure": label,
                "unit": unit,
                "higher_is_better": higher,
                "without": a,
                "with": b,
                "median_without": ma,
                "median_with": mb,
                "ratio": round(mb / ma, 3) if a and b and ma else None,
            }
        )
    return out


async def run_watchers(
    bench: CairnBench,
    rounds: int,
    n_watchers: int,
    steps: int,
    one_runs: int,
    flight_runs: int,
    via: str,
    gap_ms: float = 0,
) -> dict[str, Any]:
    per_round: list[dict[str, Any]] = []
    async with WatcherPool(bench, via) as pool:
        for r in range(rounds):
            order = (0, n_watchers) if r % 2 == 0 else (n_watchers, 0)
            for w in order:
                one = await one_at_a_time(bench, pool, w, one_runs, steps, gap_ms)
                flight = await in_flight(bench, pool, w > 0, flight_runs, n_watchers, steps, gap_ms)
                per_round.append({"round": r + 1, "watchers": w, "parts": {"one": one, "flight": flight}})
                attached = (
                    f" (watchers attached in p50 {one['attach_ms']['p50']:.0f} ms, "
                    f"{one['late_attach']} runs after their start)"
                    if w
                    else ""
                )
                log(
                    f"  w round {r + 1}, {w} watchers: one run step p50 {one['step_ms']['p50']:.2f} ms, "
                    f"p99 {one['step_ms']['p99']:.2f} ms{attached}; in flight {flight['runs_per_s']} runs/s, "
                    f"step p50 {flight['step_ms']['p50']:.2f} ms"
                )
    return {
        "rounds": rounds,
        "watchers": n_watchers,
        "via": via,
        "steps_per_run": steps,
        "step_gap_ms": gap_ms,
        "how": (
            f"one run at a time ({one_runs} runs, {n_watchers} watchers on each) and {flight_runs} runs "
            f"with {n_watchers} in flight ({n_watchers} watchers, one per run in flight); conditions "
            "alternating 0/W, W/0 per round; watchers on "
            + ("a frontend replica of their own" if bench.cluster.watch_frontend else "the workers' frontend")
        ),
        "per_round": per_round,
        "compared": compare(per_round, n_watchers),
    }
