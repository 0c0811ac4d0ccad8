"""Fixtures of the dashboard's browser tests: Debian's Chromium driven by
Playwright's sync API against the pages the frontend serves on its HTTP port (the
pages' contract, addresses and data-testid hooks, is docs/dashboard.md; the helpers
are in browser_helpers.py).

Shared by the browser tests (made by the first that asks, closed before the next
test outside tests/browser): ``chromium`` (one browser: /usr/bin/chromium or
$CAIRN_CHROMIUM, installed by scripts/test_tools.sh with apt-get; Playwright never
downloads one) and ``dashboard`` (one cluster for the tests that add runs of their
own and read only those: a worker of tests/apps/dashboard_tasks.py, version dash-v1,
and the schedule dash-nightly).
Per test: ``page`` (a page in a fresh browser context, 1280x800, whose pages hold
the session's admin key in sessionStorage, as the key dialog leaves it; when the test
fails, its screenshot and console go to <artifacts>/failures/), ``keyless_page``
(the same with no key: the dashboard asks for one), ``artifacts``
($CAIRN_TEST_ARTIFACTS, else tests/browser/artifacts/, git-ignored), and
``dashboard_cluster`` (a cluster of the test's own, with no worker, for tests that
stop and start workers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    BROWSER_DIR,
    CHROMIUM,
    CHROMIUM_ARGS,
    SCHEDULE_CRON,
    SCHEDULE_ID,
    TIMEOUT_MS,
    WINDOW,
    Dashboard,
    artifacts_dir,
    give_key,
    http_address,
    safe_name,
    start_dashboard_worker,
)
from harness import Cluster, make_cluster
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from worker_sdk import Client

expect.set_options(timeout=TIMEOUT_MS)


class _Shared:
    """What the browser tests share: Playwright's driver, one Chromium and one
    cluster, made by the first test that asks and closed (by the teardown hook
    below) as soon as the next test is not a browser test, not at the session's
    end: Playwright's sync API keeps an asyncio loop marked running in the main
    thread while it is started, where the other tiers' asyncio.run() would fail, and
    the cluster's processes would go on costing CPU under them."""

    def __init__(self) -> None:
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None
        self.dashboard: Dashboard | None = None
        self.cluster: Cluster | None = None
        self.client: Client | None = None

    def chromium(self) -> Browser:
        if self.browser is None:
            if not CHROMIUM.exists():
                pytest.fail(
                    f"Chromium is not at {CHROMIUM}: scripts/test.sh installs Debian's chromium with "
                    "apt-get (its log: .venv/apt-chromium.log); or set CAIRN_CHROMIUM to a Chromium binary",
                    pytrace=False,
                )
            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        return self.browser

    def shared_dashboard(self, log_dir: Path, postgres_server: Any, nats: Any) -> Dashboard:
        if self.dashboard is None:
            env, url = http_address()
            for server in (postgres_server, nats):  # an earlier test may have stopped one
                if not isinstance(server, str) and hasattr(server, "running") and not server.running:
                    server.start()
            self.cluster = make_cluster(
                log_dir=log_dir, postgres=postgres_server, nats=nats, test_name="browser", env=env
            )
            try:
                worker = start_dashboard_worker(self.cluster)
                self.client = Client(address=self.cluster.address)
                self.client.create_schedule(
                    SCHEDULE_ID, "dash-noop", SCHEDULE_CRON, payload={"from": "schedule"}
                )
            except BaseException:
                self.close()
                raise
            self.dashboard = Dashboard(self.cluster, url, self.client, worker)
        return self.dashboard

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.browser is not None:
            with contextlib.suppress(Exception):
                self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()
        self.__init__()  # type: ignore[misc]


_SHARED = _Shared()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    result = yield
    if nextitem is None or BROWSER_DIR not in Path(nextitem.path).parents:
        _SHARED.close()
    return result


@pytest.fixture
def chromium() -> Browser:
    """The one headless Chromium of the browser tests: Debian's, never a download."""
    return _SHARED.chromium()


@pytest.fixture
def artifacts() -> Path:
    return artifacts_dir()


def _context(chromium: Browser, *, key: bool) -> Iterator[BrowserContext]:
    context = chromium.new_context(viewport=WINDOW)
    context.set_default_timeout(TIMEOUT_MS)
    if key:
        give_key(context)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh context whose pages hold the session's admin key (give_key), so the
    dashboard never asks for one."""
    yield from _context(chromium, key=True)


@pytest.fixture
def keyless_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh context with no key: the dashboard asks for one."""
    yield from _context(chromium, key=False)


def _page(request: pytest.FixtureRequest, context: BrowserContext) -> Iterator[Page]:
    p = context.new_page()
    console: list[str] = []
    p.on("console", lambda m: console.append(f"console.{m.type}: {m.text}"))
    p.on("pageerror", lambda e: console.append(f"page error: {e}"))
    p.on("requestfailed", lambda r: console.append(f"request failed: {r.method} {r.url}: {r.failure}"))
    yield p
    report = getattr(request.node, "rep_call", None) or getattr(request.node, "rep_setup", None)
    if report is not None and report.failed:
        d = artifacts_dir() / "failures"
        d.mkdir(parents=True, exist_ok=True)
        name = safe_name(request.node.nodeid)
        try:
            p.screenshot(path=str(d / f"{name}.png"), full_page=True)
        except Exception as exc:  # a crashed page: note it, keep the test's own failure
            console.append(f"(no screenshot: {exc})")
        (d / f"{name}.console.txt").write_text(f"url: {p.url}\n" + "\n".join(console) + "\n")


@pytest.fixture
def page(request: pytest.FixtureRequest, browser_context: BrowserContext) -> Iterator[Page]:
    """A page of a fresh context holding the admin key. When the test fails,
    <artifacts>/failures/ gets its screenshot (<test>.png) and what its console
    said (<test>.console.txt)."""
    yield from _page(request, browser_context)


@pytest.fixture
def keyless_page(request: pytest.FixtureRequest, keyless_context: BrowserContext) -> Iterator[Page]:
    """A page of a fresh context with no key (as `page` on failure)."""
    yield from _page(request, keyless_context)


@pytest.fixture
def dashboard(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any, nats: Any) -> Dashboard:
    """The cluster the browser tests share, for tests that add runs of their own and
    read only those (never a count of all runs): a worker of dashboard_tasks
    (version dash-v1) and the schedule dash-nightly of dash-noop."""
    if _SHARED.dashboard is None:
        log_dir = tmp_path_factory.mktemp("dashboard-cluster")
        return _SHARED.shared_dashboard(log_dir, postgres_server, nats)
    return _SHARED.dashboard


@pytest.fixture
def dashboard_cluster(cluster_factory: Any) -> Iterator[Dashboard]:
    """A cluster of this test's own serving the dashboard, with no worker yet."""
    env, url = http_address()
    cluster = cluster_factory(env=env)
    with Client(address=cluster.address) as client:
        yield Dashboard(cluster, url, client)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The shared cluster is not made by cluster_factory, so tests/conftest.py does
    not attach its logs: a failing test that used it gets their last lines here."""
    report = yield
    shared = getattr(item, "funcargs", {}).get("dashboard")
    if report.failed and report.when in ("setup", "call") and isinstance(shared, Dashboard):
        report.sections.append(("shared dashboard cluster logs (last lines)", shared.cluster.log_tails()))
    return report
