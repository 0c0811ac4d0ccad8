"""The browser tests' own set-up, checked without the dashboard: Debian's Chromium
starts under Playwright with the project's flags and loads a page the frontend
serves (Redoc at /docs), a screenshot goes to the artifacts directory, and axe-core
(injected from tests/browser/node_modules) finds a violation planted in a page."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import CHROMIUM, Dashboard, axe_violations
from playwright.sync_api import Browser, Page, expect


def test_chromium_is_debians(chromium: Browser) -> None:
    assert CHROMIUM.exists()
    assert chromium.version, "Chromium did not say its version"


def test_frontend_page_loads_and_screenshot_is_saved(
    page: Page, dashboard: Dashboard, artifacts: Path
) -> None:
    response = page.goto(dashboard.at("/docs"))
    assert response is not None and response.ok, response
    expect(page.locator("redoc, .redoc-wrap").first).to_be_attached()
    shot = artifacts / "setup-docs.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000


def test_axe_core_finds_a_planted_violation(page: Page) -> None:
    page.set_content(
        '<!doctype html><html lang="en"><head><title>planted</title></head>'
        '<body><main><h1>planted</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></main></body></html>'
    )
    violations = axe_violations(page)
    by_id = {v["id"]: v for v in violations}
    assert "image-alt" in by_id, violations
    assert by_id["image-alt"]["impact"] == "critical", by_id["image-alt"]
    assert by_id["image-alt"]["targets"] == ["img"], by_id["image-alt"]
