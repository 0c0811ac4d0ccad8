#!/usr/bin/env python
"""How long the dashboard's pages take to show their first rows with 100,000 runs in
the database (issue 13: "every page loads under 300 ms"). It prints figures and
writes them to JSON; it never asserts a time.

    python bench/dashboard_load.py [--runs 100000] [--loads 20] [--json PATH] [--keep]

It starts one embedded PostgreSQL and one NATS (bench/processes.py) and Cairn as
`cairn dev` runs it (bench/cluster.py: history, matching, a frontend serving HTTP,
one worker of bench/tasks.py), fills the database with --runs finished runs in one
INSERT ... SELECT generate_series statement (a week of history over five tasks: runs,
one attempt, one step and three events each; 2 % failed with an error, 1 % canceled,
every tenth tagged "nightly"), triggers 5 real runs of ten steps, ANALYZEs, then opens
each page --loads times in Debian's Chromium (/usr/bin/chromium or $CAIRN_CHROMIUM,
driven by Playwright as in tests/browser; "cold": a fresh browser context per load, so
every file is fetched; "warm": one context, whose HTTP cache revalidates them; each
after two loads that are not counted) and reports, per page and mode, the
time from the start of the navigation to the first animation frame after the page's
first rows are in the document (a MutationObserver in the page, on the page's own
clock): median, p95, min and max, and DOMContentLoaded's median beside it.
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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.cluster import CairnCluster  # noqa: E402
from bench.common import log, quantile  # noqa: E402
from bench.processes import Servers, cleanup, on_signal  # noqa: E402
from bench.settings import BENCH  # noqa: E402

CHROMIUM = os.environ.get("CAIRN_CHROMIUM") or "/usr/bin/chromium"
# The flags tests/browser uses, for the same reasons (tests/browser/browser_helpers.py).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WARMUP_LOADS = 2
REAL_RUNS = 5

# One statement: the runs, then from what it returned one attempt, one step and three
# events per run ($1 runs, one every 6 s back from an hour ago: 100,000 is a week).
FILL = """
WITH n AS (
    SELECT i, gen_random_uuid() AS id,
           now() - interval '1 hour' - i * interval '6 seconds' AS created,
           (ARRAY['one_step', 'ten_steps', 'latency', 'many_steps', 'drain'])[1 + i % 5] AS task,
           CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 100 = 1 THEN 'canceled' ELSE 'completed' END AS status
    FROM generate_series(1, $1::int) AS i
), r AS (
    INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, output, output_encoding,
                      error, attempt_count, failure_count, retry, created_at, updated_at, started_at,
                      finished_at, exec_ms, tags)
    SELECT id, 'default', task, task, status,
           convert_to('{"i": ' || i || '}', 'UTF8'), 'json/plain',
           CASE WHEN status = 'completed' THEN convert_to(i::text, 'UTF8') END,
           CASE WHEN status = 'completed' THEN 'json/plain' END,
           CASE WHEN status = 'failed' THEN jsonb_build_object(
               'type', 'ValueError', 'message', 'bulk run ' || i || ' failed',
               'stack_trace', 'Traceback (most recent call last):\n  File "bench/tasks.py", line 1\nValueError',
               'non_retryable', true) END,
           1, CASE WHEN status = 'failed' THEN 1 ELSE 0 END,
           '{"factor": 2.0, "jitter": false, "max_timeout": 60.0, "min_timeout": 1.0, "max_attempts": 1}',
           created, created + interval '7 ms', created + interval '3 ms', created + interval '7 ms', 4,
           CASE WHEN i % 10 = 0 THEN ARRAY['nightly'] ELSE '{}'::text[] END
    FROM n
    RETURNING id, status, error, created_at, started_at, finished_at
), a AS (
    INSERT INTO attempts (run_id, number, status, worker_id, worker_version, started_at, finished_at, error)
    SELECT id, 1, status, 'bench-loader', 'dev', started_at, finished_at, error FROM r
), s AS (
    INSERT INTO steps (run_id, position, name, status, output, output_encoding, attempt, tries, recorded_at)
    SELECT id, 0, 'noop', 'completed', convert_to('0', 'UTF8'), 'json/plain', 1, 1,
           started_at + interval '1 ms'
    FROM r
)
INSERT INTO run_events (run_id, type, attempt, details, at)
SELECT id, e.type, e.attempt, e.details::jsonb, e.at
FROM r, LATERAL (VALUES
    ('triggered', 0, '{"schedule_id": null, "parent_run_id": null, "idempotency_key": null}', created_at),
    ('attempt_started', 1, '{"worker_id": "bench-loader", "worker_version": "dev"}', started_at),
    (r.status, 1, json_build_object('error_type', r.error ->> 'type')::text, finished_at)
) AS e(type, attempt, details, at)
"""

# In the page before its scripts: the time of the first animation frame after an
# element matching window.__cairnSelector is in the document.
OBSERVE = """
(() => {
  const selector = %s;
  window.__cairnFirstRows = null;
  const seen = () => {
    if (window.__cairnFirstRows !== null || !document.querySelector(selector)) return false;
    window.__cairnFirstRows = -1;
    requestAnimationFrame(() => { window.__cairnFirstRows = performance.now(); });
    return true;
  };
  new MutationObserver((_, observer) => { if (seen()) observer.disconnect(); })
    .observe(document, { childList: true, subtree: true });
})();
"""


async def fill(database_url: str, runs: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        started = time.monotonic()
        await conn.execute(FILL, runs)
        for table in ("runs", "attempts", "steps", "run_events"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        return time.monotonic() - started
    finally:
        await conn.close()


async def one_value(database_url: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def real_runs(address: str, n: int) -> list[str]:
    """n runs of bench/tasks.py's ten_steps, triggered once the worker has the task,
    each waited for."""
    from worker_sdk import Client, NotFoundError

    ids = []
    with Client(address=address) as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = client.trigger("ten_steps", {"i": 0})
                break
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker never registered ten_steps") from None
                time.sleep(0.1)
        ids.append(first.id)
        ids += [client.trigger("ten_steps", {"i": i}).id for i in range(1, n)]
        for run_id in ids:
            run = client.wait(run_id, timeout=60)
            if run.status != "completed":
                raise RuntimeError(f"run {run_id} ended {run.status}: {run.error}")
    return ids


def _api_ms(request: Any) -> float | None:
    """How long a finished /v1/ request took (request sent to response end), ms;
    None for other files."""
    if "/v1/" not in request.url:
        return None
    timing = request.timing
    if timing["responseEnd"] < 0 or timing["requestStart"] < 0:
        return None
    return float(timing["responseEnd"] - timing["requestStart"])


def _load(context: Any, url: str, selector: str) -> tuple[float, float, float]:
    """One navigation in a new page of `context`: (first rows, DOMContentLoaded), ms
    from the navigation's start on the page's clock, and the longest API request
    (GET /v1/..., the event streams left out: they never finish) until then."""
    page = context.new_page()
    api: list[float] = []
    page.on("requestfinished", lambda r: api.append(ms) if (ms := _api_ms(r)) is not None else None)
    try:
        page.goto(url, wait_until="commit", timeout=30_000)
        # (not wait_for_function: it evaluates a string, which the pages' CSP refuses)
        page.wait_for_selector(selector, state="attached", timeout=30_000)
        first = page.evaluate("window.__cairnFirstRows")
        while not first or first < 0:  # the animation frame after the rows came
            page.wait_for_timeout(1)
            first = page.evaluate("window.__cairnFirstRows")
        dcl = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        return float(first), float(dcl), max(api, default=0.0)
    finally:
        page.close()


KEY_SCRIPT = "try { sessionStorage.setItem('cairn.apiKey', %s); } catch (e) {}"  # as the key dialog keeps it


def measure(
    base: str, pages: list[tuple[str, str, str]], loads: int, api_key: str = ""
) -> dict[str, dict[str, Any]]:
    """Per page and mode: "cold" a fresh browser context per load (every file
    fetched), "warm" one context for all loads (its HTTP cache revalidates the
    files, as a person reloading or coming back)."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, Any]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, path, selector in pages:
                entry: dict[str, Any] = {"path": path, "selector": selector}
                for mode in ("cold", "warm"):
                    firsts: list[float] = []
                    dcls: list[float] = []
                    apis: list[float] = []
                    shared = browser.new_context(viewport={"width": 1280, "height": 800})
                    shared.add_init_script(KEY_SCRIPT % json.dumps(api_key))
                    shared.add_init_script(OBSERVE % json.dumps(selector))
                    try:
                        for i in range(WARMUP_LOADS + loads):
                            if mode == "warm":
                                first, dcl, api = _load(shared, base + path, selector)
                            else:
                                context = browser.new_context(viewport={"width": 1280, "height": 800})
                                context.add_init_script(KEY_SCRIPT % json.dumps(api_key))
                                context.add_init_script(OBSERVE % json.dumps(selector))
                                try:
                                    first, dcl, api = _load(context, base + path, selector)
                                finally:
                                    context.close()
                            if i >= WARMUP_LOADS:
                                firsts.append(first)
                                dcls.append(dcl)
                                apis.append(api)
                    finally:
                        shared.close()
                    values = sorted(firsts)
                    entry[mode] = {
                        "loads": len(values),
                        "median_ms": statistics.median(values),
                        "p95_ms": quantile(values, 0.95),
                        "min_ms": values[0],
                        "max_ms": values[-1],
                        "dom_content_loaded_median_ms": statistics.median(dcls),
                        "slowest_api_request_median_ms": statistics.median(apis),
                        "samples_ms": firsts,
                    }
                results[name] = entry
                log(
                    f"{name}: median {entry['cold']['median_ms']:.0f} ms cold, "
                    f"{entry['warm']['median_ms']:.0f} ms warm"
                )
        finally:
            browser.close()
    return results


def print_table(results: dict[str, dict[str, Any]], runs_in_db: int, loads: int) -> None:
    print()
    print(
        f"Dashboard pages with {runs_in_db:,} runs in the database: from the navigation's start to the"
        f" first rows shown, ms ({loads} loads each; cold: a fresh browser context per load,"
        " warm: one context)"
    )
    head = (
        f"{'page':<34} {'cold median':>11} {'p95':>5} {'max':>5}  {'warm median':>11} {'p95':>5} {'max':>5}"
    )
    print(head + "   DOMContentLoaded cold/warm   slowest /v1/ request (warm)")
    for name, r in results.items():
        c, w = r["cold"], r["warm"]
        print(
            f"{name:<34} {c['median_ms']:>11.0f} {c['p95_ms']:>5.0f} {c['max_ms']:>5.0f}"
            f"  {w['median_ms']:>11.0f} {w['p95_ms']:>5.0f} {w['max_ms']:>5.0f}"
            f"   {c['dom_content_loaded_median_ms']:>7.0f} / {w['dom_content_loaded_median_ms']:<7.0f}"
            f"   {w['slowest_api_request_median_ms']:>10.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs to load (default 100,000)")
    parser.add_argument("--loads", type=int, default=20, help="measured loads per page (default 20)")
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/dashboard-<time>.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(
            f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium (apt-get install chromium),"
            " or set CAIRN_CHROMIUM",
            file=sys.stderr,
        )
        return 2

    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C or SIGTERM: stop, clean up (as bench/run.py)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cleanup)
    root = Path(tempfile.mkdtemp(prefix="cairn-dashboard-bench-"))
    logs = root / "logs"
    logs.mkdir()
    servers = Servers(root)
    cluster: CairnCluster | None = None
    ok = False
    try:
        servers.start(logs)
        database_url = servers.pg.create_database("cairn_dashboard")
        cluster = CairnCluster(
            logs, database_url, servers.nats.url, workers=1, slots=8, retention_days=45, prune_seconds=3600
        )
        cluster.start()
        log(f"frontend HTTP on {cluster.http_address}; loading {args.runs:,} runs")
        seconds = asyncio.run(fill(database_url, args.runs))
        log(f"loaded {args.runs:,} runs in {seconds:.1f} s (one INSERT ... SELECT generate_series)")
        ids = real_runs(cluster.address, REAL_RUNS)
        bulk_failed = asyncio.run(
            one_value(
                database_url,
                "SELECT id::text FROM runs WHERE status = 'failed' ORDER BY created_at DESC LIMIT 1",
            )
        )
        runs_in_db = int(asyncio.run(one_value(database_url, "SELECT count(*) FROM runs")))
        cluster.check()
        pages = [
            ("runs list /", "/", '[data-testid="run-row"]'),
            ("runs list ?status=failed", "/?status=failed", '[data-testid="run-row"]'),
            ("runs list ?tag=nightly", "/?tag=nightly", '[data-testid="run-row"]'),
            ("runs list ?task=latency&since=2h", "/?task=latency&since=2h", '[data-testid="run-row"]'),
            ("a run (10 steps)", f"/runs/{ids[0]}", '[data-testid="timeline-step"]'),
            ("a loaded failed run", f"/runs/{bulk_failed}", '[data-testid="timeline-step"]'),
            ("queues", "/queues", '[data-testid="queue-row"]'),
            ("workers", "/workers", '[data-testid="worker-row"]'),
        ]
        results = measure(f"http://{cluster.http_address}", pages, args.loads, cluster.api_key)
        cluster.check()
        print_table(results, runs_in_db, args.loads)
        out = args.json or BENCH / "results" / f"dashboard-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "runs_in_db": runs_in_db,
                    "fill_seconds": seconds,
                    "loads": args.loads,
                    "warmup_loads": WARMUP_LOADS,
                    "cpus": os.cpu_count(),
                    "pages": results,
                },
                indent=2,
            )
        )
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
            print(f"kept {root} (data and every process's log)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
