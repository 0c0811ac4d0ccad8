"""AsyncClient.watch / watch_runs and Client.watch / watch_runs against the
in-memory stub (sdk_fakes.FakeStub): typed RunUpdate dataclasses in order, the
watch ends with the run, a reconnect after UNAVAILABLE resumes after the last
event yielded, errors map to CairnError types, and leaving the loop cancels the
call."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub, rpc_error

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import (
    AsyncClient,
    Client,
    InvalidArgumentError,
    NotFoundError,
    RunEvent,
    RunStatus,
    RunUpdate,
    UnavailableError,
    _client,
)


def update(event_id: int, kind: str, status: int, done: bool = False, attempt: int = 0) -> rpb.RunUpdate:
    event = cpb.RunEvent(id=event_id, type=kind, attempt=attempt, details_json=json.dumps({"n": event_id}))
    event.at.FromDatetime(datetime(2026, 1, 1, 12, 0, event_id, tzinfo=UTC))
    run = cpb.Run(id="run-1", task_id="t", status=status, attempt_count=attempt)  # type: ignore[arg-type]
    return rpb.RunUpdate(event=event, run=run, done=done)


HISTORY = [
    update(1, "triggered", cpb.RUN_STATUS_QUEUED),
    update(2, "attempt_started", cpb.RUN_STATUS_EXECUTING, attempt=1),
    update(3, "completed", cpb.RUN_STATUS_COMPLETED, done=True, attempt=1),
]


def client_with(fake: FakeStub) -> AsyncClient:
    client = AsyncClient(address="127.0.0.1:1", namespace="ns")
    client._stub = fake  # type: ignore[assignment]
    return client


def collect(client: AsyncClient, run_id: str = "run-1", after: int = 0) -> list[RunUpdate]:
    async def go() -> list[RunUpdate]:
        return [u async for u in client.watch(run_id, after_event_id=after)]

    return asyncio.run(go())


def test_watch_yields_typed_updates_in_order_and_ends_with_the_run() -> None:
    fake = FakeStub()
    fake.watch_scripts = [[*HISTORY, update(4, "never", cpb.RUN_STATUS_COMPLETED)]]
    got = collect(client_with(fake), after=0)
    assert [(u.event.id, u.event.type, u.run.status, u.done) for u in got] == [
        (1, "triggered", RunStatus.QUEUED, False),
        (2, "attempt_started", RunStatus.EXECUTING, False),
        (3, "completed", RunStatus.COMPLETED, True),
    ]
    first = got[0]
    assert isinstance(first, RunUpdate) and isinstance(first.event, RunEvent)
    assert first.event.at == datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC)
    assert json.loads(first.event.details) == {"n": 1}
    assert got[1].event.attempt == 1 and got[1].run.id == "run-1" and got[1].run.task == "t"
    (request,) = fake.requests("WatchRun")
    assert (request.namespace, request.run_id, request.after_event_id) == ("ns", "run-1", 0)
    assert fake.streams[0].cancelled


def test_watch_resumes_after_the_event_given() -> None:
    fake = FakeStub()
    fake.watch_scripts = [HISTORY[2:]]
    got = collect(client_with(fake), after=2)
    assert [u.event.id for u in got] == [3]
    assert fake.requests("WatchRun")[0].after_event_id == 2


def test_watch_reconnects_after_the_last_event_it_yielded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "WATCH_BACKOFF", 0.0)
    fake = FakeStub()
    gone = rpc_error(grpc.StatusCode.UNAVAILABLE, "frontend went away")
    fake.watch_scripts = [[HISTORY[0], gone], [gone], [HISTORY[1], HISTORY[2]]]
    got = collect(client_with(fake))
    assert [u.event.id for u in got] == [1, 2, 3]
    assert [r.after_event_id for r in fake.requests("WatchRun")] == [0, 1, 1]
    assert all(s.cancelled for s in fake.streams)


def test_watch_gives_up_after_unavailable_for_its_retry_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnects while the frontend stays away for WATCH_RETRY_SECONDS (30 s;
    1 s here: long enough for three reconnects even on a loaded machine), then
    UnavailableError naming the frontend."""
    monkeypatch.setattr(_client, "WATCH_RETRY_SECONDS", 1.0)
    monkeypatch.setattr(_client, "WATCH_BACKOFF", 0.01)
    fake = FakeStub()
    gone = rpc_error(grpc.StatusCode.UNAVAILABLE, "down")
    fake.watch_scripts = [[gone] for _ in range(100)]
    started = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        collect(client_with(fake))
    # not before the retry time; after it, with 4 s of slack for a loaded machine
    assert 1.0 <= time.monotonic() - started < 1.0 + 4.0
    assert len(fake.requests("WatchRun")) >= 3
    assert str(info.value).startswith("cannot reach the Cairn frontend at 127.0.0.1:1: down (sent again for ")


@pytest.mark.parametrize(
    ("code", "error"),
    [(grpc.StatusCode.NOT_FOUND, NotFoundError), (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError)],
)
def test_watch_errors_are_cairn_errors(code: grpc.StatusCode, error: type[Exception]) -> None:
    fake = FakeStub()
    fake.watch_scripts = [[rpc_error(code, "refused")]]
    with pytest.raises(error, match="refused"):
        collect(client_with(fake))
    assert len(fake.requests("WatchRun")) == 1


@pytest.mark.parametrize("after", [-1, True, "3", 1.5])
def test_watch_refuses_a_bad_after_event_id(after: Any) -> None:
    fake = FakeStub()
    with pytest.raises(InvalidArgumentError, match="after_event_id"):
        collect(client_with(fake), after=after)
    assert fake.calls == []


def test_watch_runs_sends_the_filter_and_yields_until_left() -> None:
    fake = FakeStub()
    fake.watch_scripts = [HISTORY]

    async def go() -> list[RunUpdate]:
        got = []
        async for u in client_with(fake).watch_runs(task="t", tags=["a", "b"]):
            got.append(u)
            if len(got) == 2:
                break
        return got

    got = asyncio.run(go())
    assert [u.event.id for u in got] == [1, 2]
    (request,) = fake.requests("WatchRuns")
    assert (request.namespace, request.task_id, list(request.tags)) == ("ns", "t", ["a", "b"])
    assert fake.streams[0].cancelled


def test_watch_runs_goes_on_past_a_run_that_ends() -> None:
    fake = FakeStub()
    fake.watch_scripts = [[*HISTORY, update(4, "triggered", cpb.RUN_STATUS_QUEUED)]]  # 3 ends run-1

    async def go() -> list[RunUpdate]:
        return [u async for u in client_with(fake).watch_runs()]

    got = asyncio.run(go())
    assert [(u.event.id, u.done) for u in got] == [(1, False), (2, False), (3, True), (4, False)]


def test_watch_runs_resumes_and_reconnects_after_the_last_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "WATCH_BACKOFF", 0.0)
    fake = FakeStub()
    fake.watch_scripts = [
        [HISTORY[0], rpc_error(grpc.StatusCode.UNAVAILABLE, "down")],
        [HISTORY[1], rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "refused")],
    ]
    got: list[RunUpdate] = []

    async def go() -> None:
        async for u in client_with(fake).watch_runs(after_event_id=0):
            got.append(u)

    with pytest.raises(InvalidArgumentError, match="refused"):
        asyncio.run(go())
    assert [u.event.id for u in got] == [1, 2]
    assert [r.after_event_id for r in fake.requests("WatchRuns")] == [0, 1]


def test_watch_runs_refuses_a_bad_after_event_id() -> None:
    fake = FakeStub()

    async def go() -> None:
        async for _ in client_with(fake).watch_runs(after_event_id=-5):
            pass

    with pytest.raises(InvalidArgumentError, match="after_event_id"):
        asyncio.run(go())
    assert fake.calls == []


def test_sync_client_watch_is_a_plain_iterator() -> None:
    fake = FakeStub()
    fake.watch_scripts = [HISTORY, HISTORY]
    with Client(address="127.0.0.1:1", namespace="ns") as client:
        client._async._stub = fake  # type: ignore[assignment]
        assert [u.event.id for u in client.watch("run-1")] == [1, 2, 3]
        updates = client.watch_runs(tags=["x"])
        assert next(updates).event.id == 1
        updates.close()  # leaving early cancels the call
        assert fake.streams[1].cancelled
        with pytest.raises(NotFoundError):
            fake.watch_scripts = [[rpc_error(grpc.StatusCode.NOT_FOUND, "no run")]]
            list(client.watch("nope"))
