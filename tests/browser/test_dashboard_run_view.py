"""A run's page (`/runs/RUN_ID`, docs/dashboard.md) in Chromium, on the shared
cluster: three steps in the timeline with their durations and results and the run's
log lines; a failed attempt's error with its stack trace, then the completed one;
cancel a waiting run with the button (confirmed); complete a waiting token with a
JSON value from the page and see the run finish, live; axe-core on a run page."""

from __future__ import annotations

import json
import re

from browser_helpers import NONDET_EVENT, Dashboard, check_accessibility, tid
from playwright.sync_api import Locator, Page, expect

# What a duration looks like on the pages: "12 ms", "0.3 s", "1m 02s", "—" never.
DURATION = re.compile(r"\d")


def open_run(page: Page, dashboard: Dashboard, run_id: str) -> Locator:
    """Opens the run's page; returns its header once shown."""
    page.goto(dashboard.at(f"/runs/{run_id}"))
    header = tid(page, "run-header")
    expect(header).to_be_visible()
    return header


def step_named(page: Page, name: str) -> Locator:
    return tid(page, "timeline-step").filter(
        has=page.get_by_test_id("step-name").get_by_text(name, exact=True)
    )


def test_three_steps_with_durations_results_and_logs(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-three-steps", {"item": "gizmos"}, tags=["browser"])
    done = dashboard.wait_status(run.id, "completed")
    header = open_run(page, dashboard, run.id)

    expect(tid(header, "run-status")).to_have_text("completed")
    expect(tid(header, "run-task")).to_have_text("dash-three-steps")
    expect(tid(header, "run-queue")).to_have_text(done.queue)
    expect(tid(header, "run-worker-version")).to_have_text("dash-v1")
    expect(tid(header, "run-tags")).to_contain_text("browser")
    expect(tid(header, "run-trace-id")).to_have_text(done.trace_id or "")

    timeline = tid(page, "timeline")
    expect(timeline).to_be_visible()
    steps = tid(timeline, "timeline-step")
    expect(steps).to_have_count(3)
    expect(tid(steps, "step-name")).to_have_text(["fetch", "transform", "store"])
    for position in range(3):
        step = steps.nth(position)
        expect(step).to_have_attribute("data-position", str(position))
        expect(step).to_have_attribute("data-status", "completed")
        expect(tid(step, "step-duration")).to_have_text(DURATION)
    # Each step's recorded result: the state at that checkpoint.
    expect(tid(steps.nth(0), "step-result")).to_contain_text("gizmos")
    expect(tid(steps.nth(1), "step-result")).to_contain_text('"total"')
    expect(tid(steps.nth(1), "step-result")).to_contain_text("6")
    expect(tid(steps.nth(2), "step-result")).to_contain_text("stored gizmos total=6")
    expect(tid(timeline, "timeline-attempt")).to_have_count(1)
    expect(tid(timeline, "timeline-attempt")).to_have_attribute("data-status", "completed")

    logs = tid(page, "run-logs")
    lines = tid(logs, "log-line")
    expect(lines).to_have_count(4)
    expect(lines.nth(0)).to_contain_text("three steps for gizmos")
    expect(lines.nth(1)).to_contain_text("fetching gizmos")
    expect(lines.nth(2)).to_contain_text("transforming 3 rows")
    expect(lines.nth(3)).to_contain_text("storing gizmos")
    expect(lines.nth(3)).to_contain_text(re.compile("warn", re.IGNORECASE))
    expect(tid(page, "run-input")).to_contain_text("gizmos")
    expect(tid(page, "run-output")).to_contain_text("stored gizmos total=6")
    expect(tid(page, "nondeterminism")).to_have_count(0)


def test_a_failed_attempt_shows_its_stack_trace_then_the_completed_one(
    page: Page, dashboard: Dashboard
) -> None:
    run = dashboard.trigger("dash-flaky")
    dashboard.wait_status(run.id, "completed")
    header = open_run(page, dashboard, run.id)
    expect(tid(header, "run-status")).to_have_text("completed")

    attempts = tid(tid(page, "timeline"), "timeline-attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_have_attribute("data-status", "failed")
    expect(attempts.nth(1)).to_have_attribute("data-status", "completed")

    errors = tid(page, "attempt-error")
    expect(errors).to_have_count(1)
    error = errors.first
    expect(tid(error, "error-type")).to_contain_text("FlakyServiceError")
    expect(tid(error, "error-message")).to_have_text("the service refused attempt 1")
    stack = tid(error, "error-stack")
    expect(stack).to_contain_text("Traceback")
    expect(stack).to_contain_text("explode")
    expect(stack).to_contain_text("call_service")
    # The trace can be read: shown, or opened by its disclosure.
    if not stack.is_visible():
        error.locator("summary").first.click()
    expect(stack).to_be_visible()

    lines = tid(page, "log-line")
    expect(lines.filter(has_text="attempt 1 calls the service")).to_have_count(1)
    expect(lines.filter(has_text="attempt 2 calls the service")).to_have_count(1)
    expect(tid(page, "run-output")).to_contain_text("completed on attempt 2")


def test_cancel_a_waiting_run_with_the_button(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-sleep")
    dashboard.wait_status(run.id, "waiting")
    header = open_run(page, dashboard, run.id)
    expect(tid(header, "run-status")).to_have_text("waiting")
    expect(tid(page, "timeline-wait").first).to_have_attribute("data-kind", "sleep")

    # Saying no changes nothing.
    tid(page, "action-cancel").click()
    expect(tid(page, "confirm-no")).to_be_visible()
    tid(page, "confirm-no").click()
    expect(tid(page, "confirm-no")).to_have_count(0)
    assert dashboard.client.get(run.id).status == "waiting"

    tid(page, "action-cancel").click()
    tid(page, "confirm-yes").click()
    expect(tid(header, "run-status")).to_have_text("canceled")
    expect(tid(page, "action-message")).not_to_be_empty()
    assert dashboard.client.get(run.id).status == "canceled"


def test_complete_a_waiting_token_from_the_page(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-token")
    dashboard.wait_status(run.id, "waiting")
    header = open_run(page, dashboard, run.id)
    expect(tid(header, "run-status")).to_have_text("waiting")
    expect(tid(page, "timeline-wait").first).to_have_attribute("data-kind", "token")
    expect(tid(page, "log-line").filter(has_text="waiting on token")).to_have_count(1)

    value = {"approved": True, "by": "browser"}
    form = tid(page, "token-form")
    expect(form).to_be_visible()
    tid(form, "token-value").fill(json.dumps(value))
    tid(form, "token-submit").click()

    expect(tid(header, "run-status")).to_have_text("completed")
    expect(tid(page, "run-output")).to_contain_text('"by"')
    expect(tid(page, "run-output")).to_contain_text("browser")
    finished = dashboard.client.get(run.id)
    assert finished.status == "completed", finished
    assert finished.output == {"approved_with": value}, finished.output


def test_a_bad_token_value_is_refused_on_the_page(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-token")
    dashboard.wait_status(run.id, "waiting")
    open_run(page, dashboard, run.id)
    form = tid(page, "token-form")
    tid(form, "token-value").fill("{not json")
    tid(form, "token-submit").click()
    expect(tid(page, "action-message")).to_contain_text(re.compile("JSON", re.IGNORECASE))
    assert dashboard.client.get(run.id).status == "waiting"
    dashboard.client.cancel(run.id)


def test_replay_opens_the_new_run(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-three-steps", {"item": "replayed"})
    dashboard.wait_status(run.id, "completed")
    open_run(page, dashboard, run.id)
    tid(page, "action-replay").click()
    tid(page, "confirm-yes").click()
    expect(page).not_to_have_url(dashboard.at(f"/runs/{run.id}"))
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != run.id
    header = tid(page, "run-header")
    expect(header).to_contain_text(new_id)  # the new run's page, not the old one's
    expect(tid(header, "run-task")).to_have_text("dash-three-steps")
    expect(tid(page, "run-input")).to_contain_text("replayed")
    expect(tid(header, "run-status")).to_have_text("completed")  # followed live
    replayed = dashboard.wait_status(new_id, "completed")
    assert replayed.input == {"item": "replayed"}, replayed.input


def test_send_an_event_from_the_page(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-nondet")  # version 1 waits for the event "dash-go"
    dashboard.wait_status(run.id, "waiting")
    header = open_run(page, dashboard, run.id)
    expect(tid(page, "timeline-wait").first).to_have_attribute("data-kind", "event")
    form = tid(page, "event-form")
    tid(form, "event-name").fill(NONDET_EVENT)
    tid(form, "event-value").fill('{"from": "the page"}')
    tid(form, "event-submit").click()
    expect(tid(page, "action-message")).not_to_be_empty()
    expect(tid(header, "run-status")).to_have_text("completed")
    assert dashboard.client.get(run.id).output == ["a-done", "b-done"]


def test_a_run_page_has_no_serious_accessibility_violation(page: Page, dashboard: Dashboard) -> None:
    run = dashboard.trigger("dash-flaky")
    dashboard.wait_status(run.id, "completed")
    open_run(page, dashboard, run.id)
    expect(tid(page, "timeline-step").first).to_be_visible()
    expect(tid(page, "log-line").first).to_be_visible()
    check_accessibility(page, f"a run page (/runs/{run.id}, two attempts, an error)")
