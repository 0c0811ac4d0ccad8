"""A non-determinism failure on a run's page (docs/dashboard.md: `nondeterminism`,
`data-diverged`), in Chromium, on a cluster of the test's own (its workers are
stopped and started): version 1 of "dash-nondet" (tests/apps/dashboard_tasks.py)
records step "a" and waits for an event; its worker stops; version 2
(dashboard_tasks_v2.py) calls "x" at position 0, so when the event comes the replay
diverges there and the run fails. The page names the position, the recorded step
and the new one, and marks the recorded step in the timeline."""

from __future__ import annotations

from browser_helpers import (
    NONDET_EVENT,
    TASKS_MODULE_V2,
    Dashboard,
    start_dashboard_worker,
    tid,
)
from playwright.sync_api import Page, expect


def test_a_replay_that_diverges_shows_where(page: Page, dashboard_cluster: Dashboard) -> None:
    dash = dashboard_cluster
    v1 = start_dashboard_worker(dash.cluster)  # dashboard_tasks, version dash-v1
    run = dash.trigger("dash-nondet")
    waiting = dash.wait_status(run.id, "waiting")
    assert [s.name for s in waiting.steps][:1] == ["a"], waiting.steps
    v1.stop()

    start_dashboard_worker(dash.cluster, TASKS_MODULE_V2, version="dash-v2")
    dash.client.send_event(NONDET_EVENT, {"go": True}, run_id=run.id)
    failed = dash.wait_status(run.id, "failed")
    assert failed.error is not None and "NonDeterminism" in failed.error.type, failed.error

    page.goto(dash.at(f"/runs/{run.id}"))
    header = tid(page, "run-header")
    expect(tid(header, "run-status")).to_have_text("failed")
    expect(tid(header, "run-worker-version")).to_have_text("dash-v2")

    box = tid(page, "nondeterminism")
    expect(box).to_be_visible()
    expect(tid(box, "nondeterminism-recorded")).to_have_text("a")
    expect(tid(box, "nondeterminism-new")).to_have_text("x")
    expect(box).to_contain_text("0")

    diverged = page.locator('[data-testid="timeline-step"][data-diverged="true"]')
    expect(diverged).to_have_count(1)
    expect(diverged).to_have_attribute("data-position", "0")
    expect(tid(diverged, "step-name")).to_have_text("a")

    # The failed attempt's error is there too, with its type and trace.
    error = tid(page, "attempt-error").last
    expect(tid(error, "error-type")).to_contain_text("NonDeterminism")
    expect(tid(error, "error-stack")).not_to_be_empty()
