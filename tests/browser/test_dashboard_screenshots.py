"""Screenshots of the runs list, a run page, the queues page and the API key
dialog, saved as artifacts (<artifacts>/screenshots/runs.png, run.png, queues.png,
key.png; the artifacts directory is $CAIRN_TEST_ARTIFACTS, else
tests/browser/artifacts/). `scripts/screenshots.sh` runs this test alone and copies
them to docs/screenshots/, which README.md and docs/dashboard.md show."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import PAUSABLE_QUEUE, Dashboard, tid
from playwright.sync_api import Page, expect

SHOTS = ("runs.png", "run.png", "queues.png", "key.png")


def test_screenshots_of_the_runs_list_a_run_the_queues_and_the_key_dialog(
    page: Page, dashboard: Dashboard, artifacts: Path
) -> None:
    out = artifacts / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    shown = dashboard.trigger("dash-three-steps", {"item": "invoices"}, tags=["nightly", "billing"])
    others = [
        dashboard.trigger("dash-flaky", None, tags=["billing"]),
        dashboard.trigger("dash-three-steps", {"item": "receipts"}, tags=["nightly"]),
        dashboard.trigger("dash-token", None, tags=["approval"]),
        dashboard.trigger("dash-sleep", None),
    ]
    dashboard.wait_status(shown.id, "completed")
    dashboard.wait_status(others[0].id, "completed")
    dashboard.wait_status(others[1].id, "completed")
    dashboard.wait_status(others[2].id, "waiting")
    dashboard.wait_status(others[3].id, "waiting")
    try:
        page.goto(dashboard.at("/"))
        expect(page.locator(f'[data-testid="run-row"][data-run-id="{others[3].id}"]')).to_have_attribute(
            "data-status", "waiting"
        )
        page.screenshot(path=str(out / "runs.png"))

        page.goto(dashboard.at(f"/runs/{shown.id}"))
        expect(tid(page, "timeline-step")).to_have_count(3)
        expect(tid(page, "log-line")).to_have_count(4)
        page.screenshot(path=str(out / "run.png"), full_page=True)

        page.goto(dashboard.at("/queues"))
        expect(page.locator(f'[data-testid="queue-row"][data-queue="{PAUSABLE_QUEUE}"]')).to_be_visible()
        page.screenshot(path=str(out / "queues.png"))

        # The key dialog, as a tab with no key sees it: Forget key asks again.
        page.goto(dashboard.at("/"))
        expect(page.locator(f'[data-testid="run-row"][data-run-id="{others[3].id}"]')).to_be_visible()
        tid(page, "key-forget").click()
        expect(tid(page, "key-dialog")).to_be_visible()
        page.screenshot(path=str(out / "key.png"))
    finally:
        for run in others[2:]:
            dashboard.client.cancel(run.id)
    for name in SHOTS:
        assert (out / name).stat().st_size > 10_000, f"{out / name} is nearly empty"
