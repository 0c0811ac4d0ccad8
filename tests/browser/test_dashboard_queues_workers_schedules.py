"""The queues, workers and schedules pages (docs/dashboard.md) in Chromium, on the
shared cluster: the navigation links; a queue paused and resumed from the page (the
queue "dash-pausable" of tests/apps/dashboard_tasks.py, which no other test uses),
with what the API says after each click; a queue's own address; the worker of the
shared cluster with its tasks, version and slots; the schedule dash-nightly, paused
and resumed from the page."""

from __future__ import annotations

from browser_helpers import (
    PAUSABLE_QUEUE,
    RUN_TIMEOUT,
    SCHEDULE_CRON,
    SCHEDULE_ID,
    TASK_IDS,
    WORKER_VERSION,
    Dashboard,
    tid,
)
from harness import wait_for
from playwright.sync_api import Page, expect


def queue_paused(dashboard: Dashboard, name: str) -> bool:
    return next(q for q in dashboard.client.list_queues() if q.name == name).paused


def schedule_paused(dashboard: Dashboard, schedule_id: str) -> bool:
    return next(s for s in dashboard.client.list_schedules() if s.id == schedule_id).paused


def test_the_navigation_links_open_each_page(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.at("/"))
    expect(tid(page, "runs-table")).to_be_visible()
    for link, path, table in (
        ("nav-queues", "/queues", "queues-table"),
        ("nav-workers", "/workers", "workers-table"),
        ("nav-schedules", "/schedules", "schedules-table"),
        ("nav-runs", "/", "runs-table"),
    ):
        tid(page, link).click()
        expect(page).to_have_url(dashboard.at(path))
        expect(tid(page, table)).to_be_visible()
    # Back goes back: the pages are addresses in the history.
    page.go_back()
    expect(page).to_have_url(dashboard.at("/schedules"))
    expect(tid(page, "schedules-table")).to_be_visible()


def test_pause_then_resume_a_queue_from_the_page(page: Page, dashboard: Dashboard) -> None:
    assert not queue_paused(dashboard, PAUSABLE_QUEUE)
    page.goto(dashboard.at("/queues"))
    row = page.locator(f'[data-testid="queue-row"][data-queue="{PAUSABLE_QUEUE}"]')
    expect(row).to_be_visible()
    for name in ("queue-depth", "queue-executing", "queue-limit", "queue-rate", "queue-paused"):
        expect(tid(row, name)).to_be_visible()
    expect(tid(row, "queue-depth")).to_have_text("0")
    not_paused = tid(row, "queue-paused").inner_text()

    tid(row, "queue-pause").click()
    wait_for(lambda: queue_paused(dashboard, PAUSABLE_QUEUE), RUN_TIMEOUT, message="the queue never paused")
    expect(tid(row, "queue-paused")).not_to_have_text(not_paused)
    expect(tid(row, "queue-resume")).to_be_visible()

    tid(row, "queue-resume").click()
    wait_for(
        lambda: not queue_paused(dashboard, PAUSABLE_QUEUE), RUN_TIMEOUT, message="the queue never resumed"
    )
    expect(tid(row, "queue-paused")).to_have_text(not_paused)
    expect(tid(row, "queue-pause")).to_be_visible()


def test_a_queue_has_its_own_address_with_its_recent_runs(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-noop", {"queue": "page"})
    dashboard.wait_status(run.id, "completed")
    page.goto(dashboard.at(f"/queues/{PAUSABLE_QUEUE}"))
    expect(page.locator(f'[data-testid="queue-row"][data-queue="{PAUSABLE_QUEUE}"]')).to_be_visible()
    row = page.locator(f'[data-testid="run-row"][data-run-id="{run.id}"]')
    expect(row).to_be_visible()
    expect(tid(row, "run-status")).to_have_text("completed")


def test_the_workers_page_shows_the_connected_worker(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.at("/workers"))
    expect(tid(page, "workers-table")).to_be_visible()
    row = tid(page, "worker-row").filter(
        has=page.get_by_test_id("worker-version").get_by_text(WORKER_VERSION)
    )
    expect(row).to_have_count(1)
    expect(tid(row, "worker-id")).not_to_be_empty()
    for task_id in TASK_IDS:
        expect(tid(row, "worker-tasks")).to_contain_text(task_id)
    expect(tid(row, "worker-slots")).to_contain_text("free")  # "N used, M free" of its slots
    expect(tid(row, "worker-last-seen")).not_to_be_empty()


def test_the_schedules_page_shows_pauses_and_resumes_a_schedule(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.at("/schedules"))
    expect(tid(page, "schedules-table")).to_be_visible()
    row = page.locator(f'[data-testid="schedule-row"][data-schedule="{SCHEDULE_ID}"]')
    expect(row).to_be_visible()
    expect(tid(row, "schedule-cron")).to_contain_text(SCHEDULE_CRON)
    expect(tid(row, "schedule-next")).to_contain_text(":")  # a time of day
    expect(tid(row, "schedule-upcoming")).to_contain_text("then ")  # the fire times after it
    expect(tid(row, "schedule-last-run")).not_to_be_empty()
    not_paused = tid(row, "schedule-paused").inner_text()

    tid(row, "schedule-pause").click()
    wait_for(
        lambda: schedule_paused(dashboard, SCHEDULE_ID), RUN_TIMEOUT, message="the schedule never paused"
    )
    expect(tid(row, "schedule-paused")).not_to_have_text(not_paused)
    tid(row, "schedule-resume").click()
    wait_for(lambda: not schedule_paused(dashboard, SCHEDULE_ID), RUN_TIMEOUT, message="never resumed")
    expect(tid(row, "schedule-paused")).to_have_text(not_paused)
