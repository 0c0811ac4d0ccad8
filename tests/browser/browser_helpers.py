"""What the dashboard's browser tests share (fixtures in conftest.py): where
Chromium, axe-core and the artifacts are, the Dashboard (a cluster serving the
pages), the worker of tests/apps/dashboard_tasks.py, axe-core checks, and small
page helpers. The pages' contract is docs/dashboard.md."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import TESTS_DIR, Cluster, WorkerProcess, auth, wait_for, wait_registered
from playwright.sync_api import BrowserContext, Locator, Page

from cairn_cli.embedded import free_port
from worker_sdk import Client, NotFoundError, Run

BROWSER_DIR = Path(__file__).resolve().parent
APPS_DIR = TESTS_DIR / "apps"
CHROMIUM = Path(os.environ.get("CAIRN_CHROMIUM") or "/usr/bin/chromium")
AXE_JS = BROWSER_DIR / "node_modules" / "axe-core" / "axe.min.js"
# Why these flags: /work/.library/env/machines/python.md (the machines' closed network
# refuses Chromium's background connections, many at a time, and without them it looks
# up Google's hosts at every start). Playwright gives each launch a fresh temporary
# --user-data-dir of its own and removes it at close.
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
TIMEOUT_MS = 15_000  # every Playwright wait and expect has this deadline; no sleeps
RUN_TIMEOUT = 20.0  # seconds, for waits through the API
WINDOW = {"width": 1280, "height": 800}

TASKS_MODULE = "dashboard_tasks"
TASKS_MODULE_V2 = "dashboard_tasks_v2"
TASK_IDS = (
    "dash-three-steps",
    "dash-live",
    "dash-flaky",
    "dash-token",
    "dash-sleep",
    "dash-noop",
    "dash-nondet",
)
WORKER_VERSION = "dash-v1"
LIVE_QUEUE = "dash-live"
PAUSABLE_QUEUE = "dash-pausable"
NONDET_EVENT = "dash-go"
SCHEDULE_ID = "dash-nightly"
SCHEDULE_CRON = "0 3 * * *"


def artifacts_dir() -> Path:
    """$CAIRN_TEST_ARTIFACTS, else tests/browser/artifacts/ (git-ignored); made."""
    d = Path(os.environ.get("CAIRN_TEST_ARTIFACTS") or BROWSER_DIR / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("/")[-1]).strip("_")[:150]


# ---- clusters -----------------------------------------------------------------------


@dataclass
class Dashboard:
    """A cluster serving the dashboard: ``url`` (http://host:port, no slash at the
    end), ``cluster``, ``client`` (a worker_sdk Client on it), ``worker``."""

    cluster: Cluster
    url: str
    client: Client
    worker: WorkerProcess | None = None

    def at(self, path: str) -> str:
        return self.url + path

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> Run:
        """Triggers a run once the task is registered (NOT_FOUND until then)."""
        return wait_for(
            lambda: self.client.trigger(task_id, payload, **options),
            timeout=RUN_TIMEOUT,
            ignore=(NotFoundError,),
            message=f"task {task_id!r} was never registered",
        )

    def wait_status(self, run_id: str, *statuses: str) -> Run:
        """Waits (through the API) until the run has one of `statuses`."""
        return wait_for(
            lambda: r if (r := self.client.get(run_id)).status in statuses else None,
            timeout=RUN_TIMEOUT,
            message=f"run {run_id} never reached {' or '.join(statuses)}",
        )


def http_address() -> tuple[dict[str, str], str]:
    """The env giving a frontend its own HTTP port, and that port's base URL."""
    address = f"127.0.0.1:{free_port()}"
    return {"CAIRN_HTTP_ADDRESS": address}, f"http://{address}"


def start_dashboard_worker(
    cluster: Cluster, module: str = TASKS_MODULE, version: str = WORKER_VERSION
) -> WorkerProcess:
    """A `cairn worker MODULE` of tests/apps (cwd tests/apps); returns once it has
    registered (and, for dashboard_tasks, once all its tasks are in the table)."""
    worker = cluster.start_worker(module, cwd=APPS_DIR, version=version)
    wait_registered(cluster, *(TASK_IDS if module == TASKS_MODULE else ()), worker=worker)
    return worker


# ---- pages ----------------------------------------------------------------------------------


KEY_NAME = "cairn.apiKey"  # where api.js keeps the session's API key (sessionStorage)


def give_key(context: BrowserContext, key: str = auth.ADMIN_KEY) -> None:
    """Every page of `context` starts with `key` in its sessionStorage, before any
    script of the page runs, as if it had been entered in the key dialog (the
    test session's admin key unless told). Pages of an opaque origin (about:blank)
    have no storage and are left alone."""
    context.add_init_script(
        script=f"try {{ sessionStorage.setItem({json.dumps(KEY_NAME)}, {json.dumps(key)}); }} catch (e) {{}}"
    )


def tid(scope: Page | Locator, name: str) -> Locator:
    return scope.get_by_test_id(name)


def run_row(page: Page, run_id: str) -> Locator:
    """The runs list's row of one run (data-testid run-row, data-run-id)."""
    return page.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')


# ---- axe-core -------------------------------------------------------------------------------


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Injects axe-core (tests/browser/node_modules, from npm ci) into the page and
    runs it on the whole document; returns its violations (id, impact, help, and the
    targets of the nodes)."""
    if not AXE_JS.exists():
        pytest.fail(
            f"{AXE_JS} is missing: scripts/test.sh installs it (npm ci --prefix tests/browser)",
            pytrace=False,
        )
    # Evaluated through DevTools, which the page's Content-Security-Policy does not
    # govern: the dashboard's script-src 'self' refuses an injected <script> tag.
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           targets: v.nodes.map(n => n.target.join(' '))}));
        }"""
    )
    return list(result)


def check_accessibility(page: Page, what: str) -> list[dict[str, Any]]:
    """Asserts axe-core finds no critical or serious violation on the page; prints
    the others (moderate, minor) and returns them."""
    violations = axe_violations(page)
    bad = [v for v in violations if v["impact"] in ("critical", "serious")]
    others = [v for v in violations if v not in bad]
    for v in others:
        print(f"axe on {what}, {v['impact']}: {v['id']}: {v['help']} at {v['targets'][:5]}")
    assert not bad, f"axe-core: critical or serious violations on {what}:\n{json.dumps(bad, indent=2)}"
    return others
