"""The HTTP JSON API against a real cluster: every route, its answers in the
CLI's --json shape, and its errors (JSON bodies, the matching HTTP status, no
stack trace, and no row written: table counts before and after)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from api_helpers import start_basic_worker
from harness import Cluster, auth
from harness.database import table_counts

from cairn_cli.embedded import free_port
from services.frontend.http.routes import HTTP_ROUTES


@pytest.fixture
def http_cluster(cluster_factory: Any) -> tuple[Cluster, httpx.Client]:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    with httpx.Client(headers=auth.headers(), base_url=f"http://{address}", timeout=30) as client:
        yield cluster, client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    return response.json()


def refused(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return str(body["message"])


def test_runs_trigger_get_list_wait_cancel(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    start_basic_worker(cluster)
    triggered = ok(
        http.post(
            "/v1/runs", json={"task_id": "echo", "payload": {"a": [1, "x"]}, "options": {"tags": ["t1"]}}
        )
    )
    run = triggered["run"]
    assert triggered["existing"] is False
    assert run["task"] == "echo" and run["input"] == {"a": [1, "x"]} and run["tags"] == ["t1"]
    waited = ok(http.get(f"/v1/runs/{run['id']}/wait", params={"timeout": 20}))
    assert waited["done"] is True and waited["run"]["status"] == "completed"
    assert waited["run"]["output"] == {"a": [1, "x"]}
    got = ok(http.get(f"/v1/runs/{run['id']}"))["run"]
    assert got["id"] == run["id"] and got["namespace"] == "default"
    assert [a["status"] for a in got["attempts"]] == ["completed"]

    again = ok(http.post("/v1/runs", json={"task_id": "echo", "payload": 1, "idempotency_key": "k1"}))
    same = ok(http.post("/v1/runs", json={"task_id": "echo", "payload": 1, "idempotency_key": "k1"}))
    assert same["existing"] is True and same["run"]["id"] == again["run"]["id"]

    batch = ok(
        http.post(
            "/v1/runs/batch",
            json={
                "runs": [
                    {"task_id": "three-steps", "payload": {"x": i}, "options": {"delay": 3600}}
                    for i in range(3)
                ]
            },
        )
    )["runs"]
    assert [b["run"]["input"] for b in batch] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert {b["run"]["status"] for b in batch} == {"delayed"}

    listed = ok(http.get("/v1/runs", params={"task_id": "three-steps", "statuses": ["delayed", "queued"]}))
    assert sorted(r["id"] for r in listed["runs"]) == sorted(b["run"]["id"] for b in batch)
    assert not {"attempts", "steps", "events"} & set(listed["runs"][0])  # summaries, as the CLI lists them
    assert listed["next_page_token"] is None
    assert [r["id"] for r in ok(http.get("/v1/runs", params={"tag": "t1"}))["runs"]] == [run["id"]]
    assert ok(http.get("/v1/runs", params={"parent_run_id": str(uuid.uuid4())}))["runs"] == []
    paged: list[str] = []
    token: str | None = ""
    while token is not None:
        page = ok(http.get("/v1/runs", params={"page_size": 2, "page_token": token}))
        paged += [r["id"] for r in page["runs"]]
        token = page["next_page_token"]
    assert len(paged) == 5 and len(set(paged)) == 5

    canceled = ok(http.post(f"/v1/runs/{batch[0]['run']['id']}/cancel", json={"reason": "no"}))["run"]
    assert canceled["status"] == "canceled"
    assert ok(http.get(f"/v1/runs/{batch[1]['run']['id']}/wait", params={"timeout": 0}))["done"] is False

    sent = {"task_id": "echo", "payload": 2, "request_id": "0b5e3d58-1d0c-4a5e-8f1e-6a7b8c9d0e1f"}
    first, retried = ok(http.post("/v1/runs", json=sent)), ok(http.post("/v1/runs", json=sent))
    assert (first["existing"], retried["existing"]) == (False, True)  # a trigger sent again: one run
    assert retried["run"]["id"] == first["run"]["id"]


def test_events_tokens_schedules_queues(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    start_basic_worker(cluster)
    sent = ok(http.post("/v1/events", json={"name": "approval", "key": "u1", "payload": True}))
    assert sent == {"delivered_run_ids": [], "buffered": False}

    token = ok(http.post("/v1/wait-tokens", json={"timeout": 600}))["token"]
    assert token["status"] == "pending" and token["timeout_at"] is not None
    assert ok(http.get(f"/v1/wait-tokens/{token['id']}"))["token"]["id"] == token["id"]
    done = ok(http.post(f"/v1/wait-tokens/{token['id']}/complete", json={"payload": {"ok": 1}}))["token"]
    assert done["status"] == "completed" and done["payload"] == {"ok": 1}
    refused(http.post(f"/v1/wait-tokens/{token['id']}/complete", json={}), 412, "FAILED_PRECONDITION")

    body = {"schedule_id": "nightly", "task_id": "echo", "cron": "0 3 * * *", "payload": {"n": 1}}
    schedule = ok(http.post("/v1/schedules", json=body))["schedule"]
    assert schedule["task"] == "echo" and schedule["payload"] == {"n": 1} and schedule["timezone"] == "UTC"
    assert [s["id"] for s in ok(http.get("/v1/schedules", params={"task_id": "echo"}))["schedules"]] == [
        "nightly"
    ]
    assert ok(http.post("/v1/schedules/nightly/pause"))["schedule"]["paused"] is True
    assert ok(http.post("/v1/schedules/nightly/resume", json={}))["schedule"]["paused"] is False
    assert ok(http.delete("/v1/schedules/nightly")) == {}
    assert ok(http.get("/v1/schedules"))["schedules"] == []

    queue = ok(
        http.patch(
            "/v1/queues/video", json={"concurrency_limit": 5, "rate_limit": {"limit": 10, "period": 1.5}}
        )
    )["queue"]
    assert queue["concurrency_limit"] == 5 and queue["rate_limit"] == {"limit": 10, "period": 1.5}
    assert ok(http.post("/v1/queues/video/pause"))["queue"]["paused"] is True
    assert ok(http.post("/v1/queues/video/resume"))["queue"]["paused"] is False
    names = [q["name"] for q in ok(http.get("/v1/queues"))["queues"]]
    assert "video" in names


def test_bad_input_is_refused_and_writes_nothing(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    before = table_counts(cluster)
    unknown = str(uuid.uuid4())
    cases = [
        (http.get("/v1/nothing"), 404, "NOT_FOUND", "/v1/nothing"),
        (http.put("/v1/runs"), 405, "UNIMPLEMENTED", "PUT"),
        (http.post("/v1/runs", content=b"{not json"), 400, "INVALID_ARGUMENT", "not valid JSON"),
        (http.post("/v1/runs", content=b"[1]"), 400, "INVALID_ARGUMENT", "JSON object"),
        (http.post("/v1/runs", json={"task_id": 5}), 400, "INVALID_ARGUMENT", "task_id"),
        (http.post("/v1/runs", json={"task_id": "echo", "colour": 1}), 400, "INVALID_ARGUMENT", "colour"),
        (
            http.post("/v1/runs", json={"task_id": "echo", "options": {"priority": "high"}}),
            400,
            "INVALID_ARGUMENT",
            "options.priority",
        ),
        (
            http.post("/v1/runs", json={"task_id": "echo", "options": {"priority": 2**40}}),
            400,
            "INVALID_ARGUMENT",
            "options.priority",
        ),
        (
            http.post("/v1/runs", json={"task_id": "echo", "options": {"delay": -1}}),
            400,
            "INVALID_ARGUMENT",
            "delay",
        ),
        (
            http.post("/v1/runs", json={"task_id": "echo", "options": {"tags": "x"}}),
            400,
            "INVALID_ARGUMENT",
            "options.tags",
        ),
        (http.post("/v1/runs", json={"payload": 1}), 400, "INVALID_ARGUMENT", "task_id"),
        (
            http.post("/v1/runs", json={"task_id": "echo", "namespace": "bad ns!"}),
            400,
            "INVALID_ARGUMENT",
            "namespace",
        ),
        (
            http.post("/v1/runs/batch", json={"runs": [{"task_id": "echo"}, {"task_id": ""}]}),
            400,
            "INVALID_ARGUMENT",
            "task_id",
        ),
        (
            http.post("/v1/runs", json={"task_id": "echo", "request_id": "not one"}),
            400,
            "INVALID_ARGUMENT",
            "request_id",
        ),
        (http.get(f"/v1/runs/{unknown}"), 404, "NOT_FOUND", unknown),
        (http.get("/v1/runs/not-a-uuid"), 400, "INVALID_ARGUMENT", "run_id"),
        (http.get("/v1/runs", params={"statuses": "sleeping"}), 400, "INVALID_ARGUMENT", "statuses"),
        (http.get("/v1/runs", params={"page_size": "ten"}), 400, "INVALID_ARGUMENT", "page_size"),
        (http.get("/v1/runs", params={"colour": "red"}), 400, "INVALID_ARGUMENT", "colour"),
        (http.get(f"/v1/runs/{unknown}/wait", params={"timeout": 600}), 400, "INVALID_ARGUMENT", "timeout"),
        (http.post(f"/v1/runs/{unknown}/cancel", json={}), 404, "NOT_FOUND"),
        (http.post(f"/v1/runs/{unknown}/cancel", json={"run_id": unknown}), 400, "INVALID_ARGUMENT", "path"),
        (http.post("/v1/events", json={"key": "k"}), 400, "INVALID_ARGUMENT", "name"),
        (http.post("/v1/wait-tokens", json={"timeout": "soon"}), 400, "INVALID_ARGUMENT", "timeout"),
        (http.get("/v1/wait-tokens/nope"), 404, "NOT_FOUND"),
        (http.post("/v1/wait-tokens/nope/complete", json={}), 404, "NOT_FOUND"),
        (
            http.post("/v1/schedules", json={"schedule_id": "s", "task_id": "echo", "cron": "every day"}),
            400,
            "INVALID_ARGUMENT",
            "cron",
        ),
        (http.post("/v1/schedules/none/pause"), 404, "NOT_FOUND"),
        (http.delete("/v1/schedules/none"), 404, "NOT_FOUND"),
        (
            http.patch("/v1/queues/q", json={"concurrency_limit": -1}),
            400,
            "INVALID_ARGUMENT",
            "concurrency_limit",
        ),
        (
            http.patch("/v1/queues/q", json={"rate_limit": {"limit": 1, "period": "1s"}}),
            400,
            "INVALID_ARGUMENT",
            "rate_limit.period",
        ),
        (http.post("/v1/queues/q/pause", json={"paused": True}), 400, "INVALID_ARGUMENT", "paused"),
    ]
    for response, status, code, *words in cases:
        refused(response, status, code, *words)
    assert table_counts(cluster) == before


def test_openapi_docs_and_metrics(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    _, http = http_cluster
    doc = ok(http.get("/openapi.json"))
    assert doc["openapi"] == "3.1.0"
    operations = {(verb.upper(), path) for path, ops in doc["paths"].items() for verb in ops}
    assert ("POST", "/v1/runs") in operations and ("PATCH", "/v1/queues/{name}") in operations
    assert {(r.verb, r.path) for r in HTTP_ROUTES} <= operations  # every route, from the route table
    page = http.get("/docs")
    assert page.status_code == 200 and "static/redoc.standalone.js" in page.text
    script = http.get("/static/redoc.standalone.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
