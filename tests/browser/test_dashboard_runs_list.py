"""The runs list (`/`, docs/dashboard.md) in Chromium, on the shared cluster: a run
triggered through the HTTP API appears and goes from queued to completed without a
reload, its link opens the run; the status filter in the address; a narrow window;
the keyboard reaches the filters and the first run link; axe-core finds no critical
or serious violation. Each test reads only runs it made (the cluster is shared)."""

from __future__ import annotations

import re
import uuid

import httpx
from browser_helpers import LIVE_QUEUE, Dashboard, check_accessibility, run_row, tid
from harness import auth
from playwright.sync_api import Page, expect

NO_RELOAD_MARK = "window.__cairnNoReload"


def open_runs(page: Page, dashboard: Dashboard, path: str = "/") -> None:
    page.goto(dashboard.at(path))
    expect(tid(page, "runs-table")).to_be_visible()


def mark_page(page: Page) -> None:
    """Sets a value on the page's window: still there later means no reload came."""
    page.evaluate(f"{NO_RELOAD_MARK} = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate(f"{NO_RELOAD_MARK} === true"), "the page reloaded"


def trigger_http(dashboard: Dashboard, task_id: str, payload: object = None, **options: object) -> str:
    """Triggers a run with POST /v1/runs (the HTTP API the pages use); its id."""
    with httpx.Client(headers=auth.headers(), base_url=dashboard.url, timeout=15) as http:
        response = http.post("/v1/runs", json={"task_id": task_id, "payload": payload, "options": options})
    assert response.status_code == 200, response.text
    return str(response.json()["run"]["id"])


def test_a_new_run_appears_and_turns_completed_without_reloading(page: Page, dashboard: Dashboard) -> None:
    client = dashboard.client
    client.pause_queue(LIVE_QUEUE)  # the run stays queued until the queue resumes
    try:
        open_runs(page, dashboard)
        expect(tid(page, "runs-live")).to_be_visible()
        mark_page(page)
        tag = f"live-{uuid.uuid4().hex[:8]}"
        run_id = trigger_http(dashboard, "dash-live", {"n": 1}, tags=[tag])

        row = run_row(page, run_id)
        expect(row).to_be_visible()
        expect(row).to_have_attribute("data-status", "queued")
        expect(tid(row, "run-status")).to_have_text("queued")
        expect(tid(row, "run-task")).to_have_text("dash-live")
        expect(tid(row, "run-tags")).to_contain_text(tag)
        assert client.get(run_id).status == "queued"
    finally:
        client.resume_queue(LIVE_QUEUE)

    expect(row).to_have_attribute("data-status", "completed")
    expect(tid(row, "run-status")).to_have_text("completed")
    expect(tid(row, "run-attempts")).to_have_text("1")
    expect(tid(row, "run-duration")).not_to_be_empty()
    assert_not_reloaded(page)
    # The newest run is first among the rows.
    expect(page.get_by_test_id("run-row").first).to_have_attribute("data-run-id", run_id)

    tid(row, "run-link").click()
    expect(page).to_have_url(dashboard.at(f"/runs/{run_id}"))
    expect(tid(page, "run-header")).to_be_visible()
    expect(tid(tid(page, "run-header"), "run-status")).to_have_text("completed")


def test_the_status_filter_is_in_the_address(page: Page, dashboard: Dashboard) -> None:
    tag = f"filter-{uuid.uuid4().hex[:8]}"
    done = dashboard.trigger("dash-three-steps", {"item": "filtered"}, tags=[tag])
    dashboard.wait_status(done.id, "completed")
    sleeping = dashboard.trigger("dash-sleep", None, tags=[tag])
    dashboard.wait_status(sleeping.id, "waiting")
    try:
        open_runs(page, dashboard, f"/?tag={tag}&status=completed")
        expect(tid(page, "runs-filter-status")).to_have_value("completed")
        expect(tid(page, "runs-filter-tag")).to_have_value(tag)
        expect(run_row(page, done.id)).to_be_visible()
        expect(run_row(page, sleeping.id)).to_have_count(0)
        expect(page.get_by_test_id("run-row")).to_have_count(1)

        # Choosing another status changes the address and the rows.
        tid(page, "runs-filter-status").select_option("waiting")
        expect(page).to_have_url(re.compile(r"[?&]status=waiting(&|$)"))
        expect(run_row(page, sleeping.id)).to_be_visible()
        expect(run_row(page, done.id)).to_have_count(0)
    finally:
        dashboard.client.cancel(sleeping.id)


def test_a_narrow_window_still_shows_a_usable_runs_table(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-three-steps", {"item": "narrow"})
    dashboard.wait_status(run.id, "completed")
    page.set_viewport_size({"width": 400, "height": 800})
    open_runs(page, dashboard)
    row = run_row(page, run.id)
    expect(row).to_be_visible()
    for name in ("run-status", "run-task", "run-link"):
        expect(tid(row, name)).to_be_visible()
        expect(tid(row, name)).to_be_in_viewport()
    # The page itself does not scroll sideways (a wide table may scroll in its own box).
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a 400px window"
    link = tid(row, "run-link")
    box = link.bounding_box()
    assert box is not None and box["width"] >= 8 and box["height"] >= 8, box
    link.click()
    expect(page).to_have_url(dashboard.at(f"/runs/{run.id}"))
    expect(tid(page, "run-header")).to_be_visible()


def test_the_keyboard_reaches_the_filters_and_the_first_run_link(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-three-steps", {"item": "keyboard"})
    dashboard.wait_status(run.id, "completed")
    open_runs(page, dashboard)
    expect(page.get_by_test_id("run-row").first).to_be_visible()
    first_link = tid(page.get_by_test_id("run-row").first, "run-link")
    first_href = first_link.get_attribute("href")

    reached: list[str] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " return e ? (e.getAttribute('data-testid') || e.tagName.toLowerCase()) : ''; }"
        )
        reached.append(focused)
        if focused == "run-link":
            break
    for name in ("runs-filter-status", "runs-filter-task", "runs-filter-tag", "runs-search"):
        assert name in reached, f"Tab never reached {name}; reached {reached}"
    assert reached[-1] == "run-link", f"Tab never reached a run link; reached {reached}"
    assert reached.index("runs-filter-status") < len(reached) - 1
    assert page.evaluate("document.activeElement.getAttribute('href')") == first_href, (
        "the first run link Tab reaches is not the first row's"
    )
    page.keyboard.press("Enter")
    expect(page).to_have_url(dashboard.at(first_href or ""))
    expect(tid(page, "run-header")).to_be_visible()


def test_the_runs_page_has_no_serious_accessibility_violation(page: Page, dashboard: Dashboard) -> None:
    for task_id, payload in (("dash-three-steps", {"item": "axe"}), ("dash-flaky", None)):
        dashboard.trigger(task_id, payload)
    open_runs(page, dashboard)
    expect(page.get_by_test_id("run-row").first).to_be_visible()
    check_accessibility(page, "the runs list (/)")


def test_search_by_run_id_opens_the_run(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-three-steps", {"item": "searched"})
    open_runs(page, dashboard)
    search = tid(page, "runs-search")
    search.fill(run.id)
    search.press("Enter")
    expect(page).to_have_url(dashboard.at(f"/runs/{run.id}"))
    expect(tid(tid(page, "run-header"), "run-task")).to_have_text("dash-three-steps")


def test_the_next_page_button_pages_through_and_is_absent_on_the_last(
    page: Page, dashboard: Dashboard
) -> None:
    tag = f"paged-{uuid.uuid4().hex[:8]}"
    runs = dashboard.client.batch_trigger(
        [{"task": "dash-three-steps", "payload": {"item": f"p{i}"}, "tags": [tag]} for i in range(51)]
    )
    open_runs(page, dashboard, f"/?tag={tag}")
    rows = page.get_by_test_id("run-row")
    expect(rows).to_have_count(50)
    # Newest first: the last run triggered is the first row (a batch's runs share a
    # creation time, so only the set is compared).
    first_page = {rows.nth(i).get_attribute("data-run-id") for i in range(50)}
    tid(page, "runs-next-page").click()
    expect(rows).to_have_count(1)
    expect(tid(page, "runs-next-page")).to_have_count(0)
    last = rows.first.get_attribute("data-run-id")
    assert last not in first_page
    assert first_page | {last} == {r.id for r in runs}
