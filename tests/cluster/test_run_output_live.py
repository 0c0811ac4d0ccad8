"""Run logs and stream chunks end to end (issue 12), against a real cluster with
the example agent (examples/agent.py) in a `cairn worker` process: its tokens
(context.stream) and log lines (context.logger) reach an SSE watcher and a gRPC
watcher in order, among its steps, as they happen; a watcher resuming with
Last-Event-ID in the middle of the tokens misses nothing; the lines come back
from GET /v1/runs/{id}/logs and `cairn runs logs`; the worker prints them; a
bad logs request is refused with a JSON error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from harness import REPO_ROOT, Cluster, auth, cairn_cli, wait_registered
from test_http_watch import EventStream

from cairn_cli.embedded import free_port
from worker_sdk import AsyncClient, Client

DEADLINE = 30.0
QUESTION = "Where do we meet?"


@pytest.fixture
def agent_cluster(cluster_factory: Any) -> tuple[Cluster, str]:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    worker = cluster.start_worker("examples.agent", cwd=REPO_ROOT)
    wait_registered(cluster, "research-agent", worker=worker)
    return cluster, f"http://{address}"


def tokens(events: list[dict[str, Any]]) -> str:
    details = [e["data"]["event"]["details"] for e in events if e["data"]["event"]["type"] == "stream"]
    assert all(d["stream"] == "tokens" for d in details)
    return "".join(d["value"] for d in details)


def test_the_agents_tokens_and_lines_reach_watchers_in_order(agent_cluster: tuple[Cluster, str]) -> None:
    cluster, base = agent_cluster
    with Client(address=cluster.address) as client:
        run = client.trigger("research-agent", {"question": QUESTION, "token_delay": 0})
    stream = EventStream(base, f"/v1/runs/{run.id}/watch")
    before_wait = stream.until("suspended")
    kinds = [e["data"]["event"]["type"] for e in before_wait]
    # The question's line, the tokens, then each tool's line inside its step, before the step's record.
    first_log = before_wait[kinds.index("log")]["data"]["event"]["details"]
    assert first_log["message"] == f"question: {QUESTION}" and first_log["step_name"] is None
    steps = [
        e["data"]["event"]["details"]["name"]
        for e in before_wait
        if e["data"]["event"]["type"] == "step_recorded"
    ]
    assert steps[:2] == ["search_venues", "get_weather"]
    for tool in ("search_venues", "get_weather"):
        line = next(
            i
            for i, e in enumerate(before_wait)
            if e["data"]["event"]["details"].get("message") == f"tool call: {tool}"
        )
        details = before_wait[line]["data"]["event"]["details"]
        assert details["step_name"] == tool and details["fields"]["tool"] == tool
        recorded = next(
            i
            for i, e in enumerate(before_wait)
            if e["data"]["event"]["type"] == "step_recorded" and e["data"]["event"]["details"]["name"] == tool
        )
        assert line < recorded
    said = tokens(before_wait)
    assert said.startswith("Let me look for venues first. Found 3 cities.")
    assert "Book the offsite in Lisbon (21 °C). Asking for approval." in said
    ids = [e["data"]["event"]["id"] for e in before_wait]
    assert ids == sorted(ids) and [int(e["id"]) for e in before_wait] == ids

    # A watcher resuming in the middle of the tokens gets exactly the rest.
    chunk_ids = [e["data"]["event"]["id"] for e in before_wait if e["data"]["event"]["type"] == "stream"]
    middle = chunk_ids[len(chunk_ids) // 2]
    resumed = EventStream(base, f"/v1/runs/{run.id}/watch", headers={"Last-Event-ID": str(middle)})
    rest = resumed.until("suspended")
    assert [e["data"]["event"]["id"] for e in rest] == [i for i in ids if i > middle]
    resumed.stop.set()

    # The approval: its token id is in the stored log lines (HTTP).
    with httpx.Client(headers=auth.headers(), base_url=base, timeout=10) as http:
        page = http.get(f"/v1/runs/{run.id}/logs").json()
        token_line = next(line for line in page["lines"] if "token_id" in line["fields"])
        assert token_line["message"].startswith("approve with: cairn tokens complete")
        assert token_line["level"] == "INFO" and token_line["attempt"] == 1
        bad = http.get(f"/v1/runs/{run.id}/logs", params={"page_size": 5000})
        assert bad.status_code == 400 and "page_size" in bad.json()["message"]
        unknown = http.get("/v1/runs/00000000-0000-0000-0000-000000000000/logs")
        assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"

    with Client(address=cluster.address) as client:
        client.complete_token(token_line["fields"]["token_id"], True)
        done = client.wait(run.id, timeout=DEADLINE)
    assert done.status == "completed" and done.output["approved"] is True, done

    async def watch_rest() -> list[Any]:
        async with AsyncClient(address=cluster.address) as ac:
            return [u async for u in ac.watch(run.id, after_event_id=ids[-1])]

    after = asyncio.run(watch_rest())
    kinds_after = [u.event.type for u in after]
    assert kinds_after[-1] == "completed"
    assert "stream" in kinds_after and "log" not in [e.type for e in done.events]
    end = stream.until("completed")
    assert tokens(end).strip() == "Approved. Booking Lisbon."

    # The CLI shows the stored lines; --follow on an ended run ends after them.
    proc = cairn_cli(cluster, "runs", "logs", run.id)
    assert proc.returncode == 0, proc.stderr
    assert f"question: {QUESTION}" in proc.stdout and "step search_venues" in proc.stdout
    proc = cairn_cli(cluster, "runs", "logs", run.id, "--follow", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["message"] for line in lines][0] == f"question: {QUESTION}"
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    # Replay-safe: attempt 2 replayed the code before the approval without logging it again.
    assert [line["message"] for line in lines].count(f"question: {QUESTION}") == 1
    assert [line["attempt"] for line in lines][-1] == 1
    proc = cairn_cli(cluster, "runs", "logs", "not-a-run")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "run_id" in proc.stderr

    # The worker printed its lines too.
    assert cluster.workers[0].log_text().count(f"question: {QUESTION}") == 1
