"""The Python client end to end, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): trigger, wait, get, and list
runs with filters, paged through the Client, the AsyncClient and raw ListRuns
page tokens.

Task code lives in tests/apps/basic_tasks.py; workers run it with
cwd=tests/apps, so it imports as `basic_tasks` (api_helpers.py starts them).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from api_helpers import RPC_TIMEOUT, start_basic_worker
from harness import Cluster, run_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import AsyncClient, Client

# ---- the Python client --------------------------------------------------------------


def test_python_client_trigger_wait_get_list_filter_and_page(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    with Client(address=cluster.address) as client:
        run = client.trigger("three-steps", {"x": 5})
        assert run.task == "three-steps"
        uuid.UUID(run.id)
        done = client.wait(run.id, timeout=20)
        assert done.id == run.id
        assert done.status == "completed", done
        assert done.output == {"sum": 15, "product": 30, "text": "sum=15 product=30"}
        assert done.error is None

        full = client.get(run.id)
        assert full.status == "completed"
        assert [s.name for s in full.steps] == ["add", "multiply", "describe"]
        assert [s.position for s in full.steps] == [0, 1, 2]
        assert [s.status for s in full.steps] == ["completed"] * 3
        assert [s.attempt for s in full.steps] == [1, 1, 1]
        assert [s.output for s in full.steps] == [15, 30, "sum=15 product=30"]
        assert len(full.attempts) == 1, full.attempts
        assert full.attempts[0].number == 1
        assert full.attempts[0].status == "completed"
        assert full.attempt_count == 1
        assert full.input == {"x": 5}

        # More runs: four of another task, to filter and page through.
        echo_ids = [client.trigger("echo", {"i": i}).id for i in range(4)]
        for rid in echo_ids:
            assert client.wait(rid, timeout=20).status == "completed"
        newest_first = list(reversed([run.id, *echo_ids]))

        listed = client.list()
        assert [r.id for r in listed] == newest_first
        assert all(r.status == "completed" for r in listed)
        assert [r.id for r in client.list(task="echo")] == list(reversed(echo_ids))
        assert [r.id for r in client.list(task="three-steps")] == [run.id]
        assert [r.id for r in client.list(status="completed")] == newest_first
        assert client.list(status="failed") == []
        assert client.list(status=["queued", "executing"]) == []
        assert [r.id for r in client.list(task="echo", status="completed")] == list(reversed(echo_ids))
        assert [r.id for r in client.list(limit=2)] == newest_first[:2]

    # Paging with the AsyncClient (limit smaller than the total) ...
    async def async_list() -> tuple[list[str], list[str]]:
        async with AsyncClient(address=cluster.address) as ac:
            return (
                [r.id for r in await ac.list(limit=50)],
                [r.id for r in await ac.list(task="echo", limit=3)],
            )

    all_ids, first_echo = asyncio.run(async_list())
    assert all_ids == newest_first
    assert first_echo == list(reversed(echo_ids))[:3]

    # ... and with raw ListRuns pages of 2: the tokens walk every run once.
    stub = run_stub(cluster)

    def walk(**filters: Any) -> tuple[list[str], int]:
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = stub.ListRuns(
                rpb.ListRunsRequest(page_size=2, page_token=token, **filters), timeout=RPC_TIMEOUT
            )
            pages += 1
            assert len(page.runs) <= 2
            for r in page.runs:
                assert not r.steps and not r.attempts, "lists carry no steps or attempts"
            seen.extend(r.id for r in page.runs)
            token = page.next_page_token
            if not token:
                return seen, pages
            assert pages < 20, "paging does not end"

    seen, pages = walk()
    assert len(seen) == len(set(seen)), f"duplicates across pages: {seen}"
    assert seen == newest_first
    assert pages == 3
    seen, pages = walk(task_id="echo")
    assert seen == list(reversed(echo_ids))
    assert pages == 2
    seen, _ = walk(statuses=[cpb.RUN_STATUS_COMPLETED])
    assert seen == newest_first
