"""The HTTP API's event streams against a real cluster: GET
/v1/runs/{run_id}/watch sends a run's updates as Server-Sent Events in order as
they happen (`id:` the event id, `data:` run_json.run_update_to_dict) and ends
after the run's last event; a reconnect with Last-Event-ID (or after_event_id)
misses nothing and repeats nothing; GET /v1/runs/watch follows a task and tag and resumes after its Last-Event-ID;
errors before the stream starts are the usual JSON bodies (unknown run 404, a
bad or foreign Last-Event-ID 400). Streams are read on threads into queues and
the test waits on them with deadlines (no sleeps)."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import start_basic_worker
from harness import Cluster, auth
from test_watch import trigger

from cairn_cli.embedded import free_port
from worker_sdk import Client

DEADLINE = 20.0
END = object()


@pytest.fixture
def http_cluster(cluster_factory: Any) -> tuple[Cluster, str]:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    return cluster, f"http://{address}"


class EventStream:
    """An SSE response read on a thread: the response (once its headers came),
    then each event as {"id", "event", "data"} (data parsed), then END."""

    def __init__(self, base: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(base, path, headers or {}), daemon=True)
        self.thread.start()
        self.response: httpx.Response = self.items.get(timeout=DEADLINE)

    def _read(self, base: str, path: str, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(
                headers=auth.headers(), base_url=base, timeout=httpx.Timeout(10, read=None)
            ) as http:
                with http.stream("GET", path, headers=headers) as response:
                    self.items.put(response)
                    event: dict[str, Any] = {}
                    for line in response.iter_lines():
                        if not line:
                            if event:
                                event["data"] = json.loads(event["data"])
                                self.items.put(event)
                            event = {}
                            continue
                        field, _, value = line.partition(": ")
                        event[field] = value
        except (httpx.HTTPError, RuntimeError) as exc:
            if not self.stop.is_set():
                self.items.put(exc)
            return
        self.items.put(END)

    def close(self) -> None:
        """Leaves a stream that does not end by itself: its thread ends when the
        cluster stops, quietly."""
        self.stop.set()

    def next(self) -> Any:
        return self.items.get(timeout=DEADLINE)

    def until(self, word: str) -> list[dict[str, Any]]:
        got = []
        while True:
            item = self.next()
            assert item is not END, f"stream ended before {word}: {[kind(e) for e in got]}"
            assert isinstance(item, dict), item
            got.append(item)
            if word in kind(item):
                return got

    def rest(self) -> list[dict[str, Any]]:
        got = []
        while (item := self.next()) is not END:
            assert isinstance(item, dict), item
            got.append(item)
        return got


def kind(event: dict[str, Any]) -> str:
    e = event["data"]["event"]
    return e["type"] + (f":{e['details']['name']}" if e["type"] == "step_recorded" else "")


def test_watch_run_over_http_in_order_resumable(http_cluster: tuple[Cluster, str], tmp_path: Path) -> None:
    cluster, base = http_cluster
    start_basic_worker(cluster)
    gate = {"counter": str(tmp_path / "counter"), "release": str(tmp_path / "release")}
    run_id = trigger(cluster, "gated", gate)
    first = EventStream(base, f"/v1/runs/{run_id}/watch")
    assert first.response.status_code == 200
    assert first.response.headers["content-type"].startswith("text/event-stream")
    assert first.response.headers["cache-control"] == "no-cache"
    # Held at its gate: what happened so far has arrived, and nothing more.
    before = first.until("step_recorded:first")
    assert [kind(e) for e in before] == ["triggered", "attempt_started", "step_recorded:first"]
    assert first.items.empty()
    assert all(e["data"]["run"]["id"] == run_id and e["data"]["done"] is False for e in before)
    assert before[-1]["data"]["run"]["status"] == "executing"
    assert [int(e["id"]) for e in before] == [e["data"]["event"]["id"] for e in before]
    # A reconnect after the second event, before the run goes on.
    second = EventStream(base, f"/v1/runs/{run_id}/watch", {"Last-Event-ID": before[1]["id"]})
    assert second.response.status_code == 200
    Path(gate["release"]).write_text("go")
    after = first.rest()  # the stream ends after the run's last event
    assert [kind(e) for e in after] == ["step_recorded:gate", "step_recorded:after", "completed"]
    assert after[-1]["data"]["done"] is True and after[-1]["data"]["run"]["status"] == "completed"
    everything = before + after
    ids = [int(e["id"]) for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    resumed = second.rest()
    assert [int(e["id"]) for e in resumed] == ids[2:]  # nothing missed, nothing repeated
    assert [e["data"] for e in resumed] == [e["data"] for e in everything[2:]]
    # after_event_id as a query parameter; Last-Event-ID wins over it (a reconnecting
    # EventSource sends its first URL again).
    query = EventStream(base, f"/v1/runs/{run_id}/watch?after_event_id={ids[3]}").rest()
    assert [int(e["id"]) for e in query] == ids[4:]
    both = EventStream(base, f"/v1/runs/{run_id}/watch?after_event_id=0", {"Last-Event-ID": str(ids[4])})
    assert [int(e["id"]) for e in both.rest()] == ids[5:]
    # Resumed after the last event: an empty stream that ends at once.
    assert EventStream(base, f"/v1/runs/{run_id}/watch", {"Last-Event-ID": str(ids[-1])}).rest() == []


def test_watch_runs_over_http_follows_a_task_and_tag(http_cluster: tuple[Cluster, str]) -> None:
    cluster, base = http_cluster
    start_basic_worker(cluster)
    # Once the headers came, the stream has its starting point.
    echo = EventStream(base, "/v1/runs/watch?task_id=echo")
    blue = EventStream(base, "/v1/runs/watch?tag=blue&tag=sky")
    assert echo.response.status_code == 200 and blue.response.status_code == 200
    other = trigger(cluster, "three-steps", {"x": 1}, tags=["blue", "sky"])
    mine = trigger(cluster, "echo", {"i": 1}, tags=["blue"])
    got = echo.until("completed")
    assert {e["data"]["run"]["id"] for e in got} == {mine}
    assert [kind(e) for e in got] == ["triggered", "attempt_started", "completed"]
    tagged = blue.until("completed")
    assert {e["data"]["run"]["id"] for e in tagged} == {other}
    echo.close()
    blue.close()


def test_watch_runs_over_http_resumes_after_last_event_id(http_cluster: tuple[Cluster, str]) -> None:
    cluster, base = http_cluster
    start_basic_worker(cluster)
    echo = EventStream(base, "/v1/runs/watch?task_id=echo")
    trigger(cluster, "echo", 1)
    last = echo.until("completed")[-1]["id"]
    echo.close()
    missed = trigger(cluster, "echo", 2)  # while nobody watches
    with Client(address=cluster.address) as client:
        assert client.wait(missed, timeout=DEADLINE).status == "completed"
    resumed = EventStream(base, "/v1/runs/watch?task_id=echo", headers={"Last-Event-ID": last})
    got = resumed.until("completed")
    assert {e["data"]["run"]["id"] for e in got} == {missed}
    assert [kind(e) for e in got] == ["triggered", "attempt_started", "completed"]
    assert all(int(e["id"]) > int(last) for e in got)
    resumed.close()
    with httpx.Client(headers=auth.headers(), base_url=base, timeout=30) as http:
        past = http.get("/v1/runs/watch", headers={"Last-Event-ID": str(10**15)})
        assert past.status_code == 400 and "after_event_id" in past.json()["message"], past.text


def test_watch_errors_before_the_stream_are_json(http_cluster: tuple[Cluster, str]) -> None:
    cluster, base = http_cluster
    start_basic_worker(cluster)
    first = trigger(cluster, "echo", 1)
    second = trigger(cluster, "echo", 2)
    first_ids = [int(e["id"]) for e in EventStream(base, f"/v1/runs/{first}/watch").rest()]
    with httpx.Client(headers=auth.headers(), base_url=base, timeout=30) as http:

        def refused(path: str, status: int, code: str, word: str, **headers: str) -> None:
            response = http.get(path, headers=headers)
            assert response.status_code == status, (response.status_code, response.text)
            assert response.headers["content-type"] == "application/json"
            body = response.json()
            assert set(body) == {"code", "message"} and body["code"] == code, body
            assert word in body["message"], body

        refused(f"/v1/runs/{uuid.uuid4()}/watch", 404, "NOT_FOUND", "")
        refused("/v1/runs/nope/watch", 400, "INVALID_ARGUMENT", "run_id")
        refused(
            f"/v1/runs/{second}/watch",
            400,
            "INVALID_ARGUMENT",
            "after_event_id",
            **{"Last-Event-ID": str(first_ids[0])},
        )
        refused(
            f"/v1/runs/{second}/watch?after_event_id={first_ids[0]}",
            400,
            "INVALID_ARGUMENT",
            "after_event_id",
        )
        refused(
            f"/v1/runs/{second}/watch", 400, "INVALID_ARGUMENT", "Last-Event-ID", **{"Last-Event-ID": "abc"}
        )
        refused(
            f"/v1/runs/{second}/watch", 400, "INVALID_ARGUMENT", "Last-Event-ID", **{"Last-Event-ID": "-1"}
        )
        refused(f"/v1/runs/{second}/watch?after_event_id=x", 400, "INVALID_ARGUMENT", "after_event_id")
        refused(f"/v1/runs/{second}/watch?bogus=1", 400, "INVALID_ARGUMENT", "bogus")
        refused("/v1/runs/watch?task_id=bad%20id!", 400, "INVALID_ARGUMENT", "task_id")
        refused("/v1/runs/watch?tags=blue", 400, "INVALID_ARGUMENT", "tags")
