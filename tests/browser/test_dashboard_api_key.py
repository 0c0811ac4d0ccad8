"""The dashboard's API key (docs/dashboard.md, "The API key"): with no key the key
dialog asks for one (axe-core finds nothing critical or serious in it; its
screenshot is <artifacts>/screenshots/key-dialog.png), a malformed key is named
without being sent, a refused key shows the API's refusal and is asked for again,
the right one shows the runs list, which follows new runs live (Server-Sent Events
read with fetch(), carrying the key, never in an address); the key survives a
reload of the tab (sessionStorage), "Forget key" asks again; a cancelled dialog
leaves the page's error and "Enter key"; a key of the wrong role is refused (403)
where the page shows its errors, not in the dialog. The live stream reconnects
after the frontend restarts, sending Last-Event-ID. The event stream reader
(sse.js SseParser) is checked in the page on pieces cut anywhere."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from browser_helpers import (
    KEY_NAME,
    RUN_TIMEOUT,
    Dashboard,
    check_accessibility,
    run_row,
    start_dashboard_worker,
    tid,
)
from harness import auth, wait_for
from playwright.sync_api import Page, Request, expect

from cairn import keys
from worker_sdk import UnavailableError


class Requests:
    """The API calls a page made: URL, method and headers (lower-case names)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        page.on("request", lambda r: self.requests.append(r) if "/v1/" in r.url else None)

    @property
    def seen(self) -> list[tuple[str, str, dict[str, str]]]:
        return [(r.url, r.resource_type, r.all_headers()) for r in list(self.requests)]

    def watches(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.seen if "/watch" in r[0]]


def stored_key(page: Page) -> Any:
    return page.evaluate(f"sessionStorage.getItem({json.dumps(KEY_NAME)})")


def enter_key(page: Page, key: str) -> None:
    dialog = tid(page, "key-dialog")
    expect(dialog).to_be_visible()
    tid(dialog, "key-input").fill(key)
    tid(dialog, "key-submit").click()


def create_key(dashboard: Dashboard, role: str) -> str:
    """A new key of `role` in the default namespace, made with POST /v1/keys."""
    with httpx.Client(headers=auth.headers(), base_url=dashboard.url, timeout=15) as http:
        response = http.post("/v1/keys", json={"namespace": "default", "role": role, "name": "browser"})
    assert response.status_code == 200, response.text
    return str(response.json()["secret"])


def test_the_dashboard_asks_for_a_key_once_per_session(
    keyless_page: Page, dashboard: Dashboard, artifacts: Path
) -> None:
    page = keyless_page
    requests = Requests(page)
    tag = f"key-{uuid.uuid4().hex[:8]}"
    first = dashboard.trigger("dash-noop", None, tags=[tag])

    page.goto(dashboard.at("/"))
    dialog = tid(page, "key-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("cairn dev")
    expect(dialog).to_contain_text(".cairn/admin.key")
    expect(dialog).to_contain_text("cairn keys create")
    expect(tid(dialog, "key-input")).to_have_attribute("type", "password")
    expect(tid(dialog, "key-input")).to_be_focused()
    expect(tid(dialog, "key-error")).to_be_hidden()
    assert not requests.requests, f"an API call went out before a key was given: {requests.seen}"
    check_accessibility(page, "the key dialog")
    shots = artifacts / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "key-dialog.png"))

    # Not a key at all: named at once, nothing sent.
    enter_key(page, "not-a-key")
    expect(tid(dialog, "key-error")).to_contain_text("not an API key")
    assert not requests.requests, requests.seen

    # A key the API does not know: its refusal, and the dialog asks again.
    unknown = keys.new_key()[1]
    enter_key(page, unknown)
    refused = tid(page, "key-dialog")
    expect(tid(refused, "key-error")).to_contain_text("refused")
    expect(tid(refused, "key-error")).to_contain_text("unknown, expired or revoked")
    expect(tid(refused, "key-input")).to_have_value("")
    assert stored_key(page) is None, "a refused key stayed in the session"
    check_accessibility(page, "the key dialog after a refusal")
    page.screenshot(path=str(shots / "key-dialog-refused.png"))

    enter_key(page, auth.ADMIN_KEY)
    expect(tid(page, "key-dialog")).to_have_count(0)
    expect(run_row(page, first.id)).to_be_visible()
    expect(tid(page, "runs-live")).to_have_attribute("data-state", "live")
    expect(tid(page, "key-forget")).to_be_visible()
    expect(tid(page, "key-enter")).to_be_hidden()
    assert stored_key(page) == auth.ADMIN_KEY

    # Live, with the key: a new run appears without a reload.
    second = dashboard.trigger("dash-noop", None, tags=[tag])
    expect(run_row(page, second.id)).to_be_visible()
    expect(run_row(page, second.id)).to_have_attribute("data-status", "completed")

    # The stream is a fetch() carrying the key in its header; no address holds a key.
    watches = requests.watches()
    assert watches and all(kind == "fetch" for _, kind, _ in watches), watches
    assert watches[-1][2].get("authorization") == keys.BEARER + auth.ADMIN_KEY
    assert requests.seen[-1][2].get("authorization", "").startswith(keys.BEARER)
    for url, _, _ in requests.seen:
        assert auth.ADMIN_KEY not in url and unknown not in url and "cairn_" not in url, url

    # The same tab's session keeps it across a reload.
    page.reload()
    expect(run_row(page, second.id)).to_be_visible()
    expect(tid(page, "runs-live")).to_have_attribute("data-state", "live")
    expect(tid(page, "key-dialog")).to_have_count(0)

    # Forget key: gone from the session, and the page asks again.
    tid(page, "key-forget").click()
    expect(tid(page, "key-dialog")).to_be_visible()
    assert stored_key(page) is None
    expect(tid(page, "key-enter")).to_be_visible()

    # Cancelled: the page says why it shows nothing; "Enter key" asks again.
    tid(page, "key-cancel").click()
    expect(tid(page, "key-dialog")).to_have_count(0)
    expect(page.locator("main [role=alert]").first).to_contain_text("UNAUTHENTICATED")
    expect(tid(page, "runs-live")).to_have_attribute("data-state", "error")
    tid(page, "key-enter").click()
    enter_key(page, auth.ADMIN_KEY)
    expect(run_row(page, second.id)).to_be_visible()
    expect(tid(page, "runs-live")).to_have_attribute("data-state", "live")


def test_a_key_of_the_wrong_role_is_refused_on_the_page(keyless_page: Page, dashboard: Dashboard) -> None:
    page = keyless_page
    worker_key = create_key(dashboard, "worker")
    page.goto(dashboard.at("/"))
    enter_key(page, worker_key)
    expect(tid(page, "key-dialog")).to_have_count(0)
    alert = page.locator("main [role=alert]").first
    expect(alert).to_contain_text("PERMISSION_DENIED")
    expect(tid(page, "runs-live")).to_have_attribute("data-state", "error")
    expect(tid(page, "key-dialog")).to_have_count(0)
    assert stored_key(page) == worker_key, "a key refused for its role is still the session's key"


def test_the_live_list_reconnects_with_last_event_id(page: Page, dashboard_cluster: Dashboard) -> None:
    dashboard = dashboard_cluster
    dashboard.worker = start_dashboard_worker(dashboard.cluster)
    requests = Requests(page)
    before = dashboard.trigger("dash-noop", None)
    dashboard.wait_status(before.id, "completed")
    page.goto(dashboard.at("/"))
    live = tid(page, "runs-live")
    expect(live).to_have_attribute("data-state", "live")
    seen = dashboard.trigger("dash-noop", None)
    expect(run_row(page, seen.id)).to_have_attribute("data-status", "completed")

    dashboard.cluster.stop("frontend")
    expect(live).to_have_attribute("data-state", "reconnecting")
    dashboard.cluster.start("frontend")
    expect(live).to_have_attribute("data-state", "live", timeout=30_000)
    # The test's own gRPC client may still be backing off from the stop.
    after = wait_for(
        lambda: dashboard.client.trigger("dash-noop", None),
        timeout=RUN_TIMEOUT,
        ignore=(UnavailableError,),
        message="the restarted frontend never took a trigger",
    )
    expect(run_row(page, after.id)).to_have_attribute("data-status", "completed")

    resumed = [headers for _, _, headers in requests.watches() if "last-event-id" in headers]
    assert resumed, "no reconnection sent Last-Event-ID"
    assert int(resumed[-1]["last-event-id"]) > 0
    assert resumed[-1].get("authorization") == keys.BEARER + auth.ADMIN_KEY


PARSE = """async (pieces) => {
  const { SseParser } = await import("/ui/sse.js");
  const events = [];
  const retries = [];
  const parser = new SseParser((e) => events.push(e), { onRetry: (ms) => retries.push(ms) });
  for (const piece of pieces) parser.feed(piece);
  return { events, retries, lastId: parser.lastId };
}"""

STREAM = (
    "\ufeff: a comment\r\n"
    "id: 7\r\n"
    'data: {"a":1}\r\n'
    "\r\n"
    "retry: 2500\n"
    "data:first\n"
    "data: second\n"
    "\n"
    "id: 9\n"
    "\n"
    "event: error\r"
    'data: {"code":"UNAVAILABLE","message":"gone"}\r'
    "\r"
    "data\n"
    "id: 10\n"
    "\n"
    "id: 11\n"
    "data: not ended"
)
EXPECTED = [
    {"type": "message", "data": '{"a":1}', "id": "7"},
    {"type": "message", "data": "first\nsecond", "id": "7"},
    {"type": "error", "data": '{"code":"UNAVAILABLE","message":"gone"}', "id": "9"},
    {"type": "message", "data": "", "id": "10"},
]


def test_the_event_stream_reader_follows_the_format(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.at("/"))
    expect(tid(page, "runs-table")).to_be_visible()
    cuts = [
        [STREAM],
        list(STREAM),  # one character at a time: every CR LF cut in two
        [STREAM[i : i + 5] for i in range(0, len(STREAM), 5)],
    ]
    for pieces in cuts:
        result = page.evaluate(PARSE, pieces)
        assert result["events"] == EXPECTED, (pieces[:3], result)
        assert result["retries"] == [2500]
        assert result["lastId"] == "10", "an id of an event not yet ended counted"
