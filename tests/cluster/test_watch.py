"""Live run streams against a real cluster (history, matching, frontend,
PostgreSQL, NATS): WatchRun delivers a run's event log in order as it happens
and ends with the run; a watcher resuming after an event id misses nothing and
gets nothing twice; WatchRuns follows a task; bad input is refused. Each stream
is read on a thread into a queue, and the test waits on the queue with a
deadline (no sleeps)."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_helpers import RPC_TIMEOUT, start_basic_worker
from harness import REPO_ROOT, Cluster, cli_env, run_stub

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import AsyncClient, Client, NotFoundError, RunStatus, RunUpdate

DEADLINE = 20.0
END = object()


class Stream:
    """A server stream read on a thread: its updates (then END, or the error)
    in a queue."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.items: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                for update in response.updates:
                    self.items.put(update)
        except grpc.RpcError as exc:
            self.items.put(exc)
            return
        self.items.put(END)

    def next(self) -> Any:
        item = self.items.get(timeout=DEADLINE)
        if isinstance(item, grpc.RpcError) and item.code() != grpc.StatusCode.CANCELLED:
            raise item
        return item

    def until(self, event_type: str) -> list[cpb.RunEvent]:
        """Updates up to and including the first of this event type."""
        got = []
        while True:
            item = self.next()
            assert item is not END, f"stream ended before {event_type}: {[u.event.type for u in got]}"
            got.append(item)
            if item.event.type == event_type:
                return got

    def rest(self) -> list[Any]:
        """Updates until the stream ends."""
        got = []
        while (item := self.next()) is not END:
            got.append(item)
        return got

    def cancel(self) -> None:
        self.call.cancel()
        self.thread.join(DEADLINE)


def watch(cluster: Cluster, run_id: str, after: int = 0) -> Stream:
    stub = run_stub(cluster)
    return Stream(stub.WatchRun(rpb.WatchRunRequest(run_id=run_id, after_event_id=after), timeout=60))


def trigger(cluster: Cluster, task: str, payload: Any, tags: list[str] | None = None) -> str:
    request = rpb.TriggerRunRequest(
        task_id=task,
        payload=cpb.Payload(data=json.dumps(payload).encode(), encoding="json/plain"),
        options=cpb.TriggerOptions(tags=tags or []),
    )
    run: str = run_stub(cluster).TriggerRun(request, timeout=RPC_TIMEOUT).run.id
    return run


def kinds(updates: list[Any]) -> list[str]:
    return [
        u.event.type
        + (f":{json.loads(u.event.details_json)['name']}" if u.event.type == "step_recorded" else "")
        for u in updates
    ]


@pytest.fixture
def gate_files(tmp_path: Path) -> dict[str, str]:
    return {"counter": str(tmp_path / "counter"), "release": str(tmp_path / "release")}


def test_watch_run_in_order_as_it_happens_and_resumes(cluster: Cluster, gate_files: dict[str, str]) -> None:
    start_basic_worker(cluster)
    run_id = trigger(cluster, "gated", gate_files)
    stream = watch(cluster, run_id)
    # The run is held at its gate step: what happened so far arrives before it is released.
    before = stream.until("step_recorded")
    assert kinds(before) == ["triggered", "attempt_started", "step_recorded:first"]
    assert before[-1].run.status == cpb.RUN_STATUS_EXECUTING
    assert not any(u.done for u in before)
    assert stream.items.empty()
    Path(gate_files["release"]).write_text("go")
    after = stream.rest()
    assert kinds(after) == ["step_recorded:gate", "step_recorded:after", "completed"]
    assert [u.done for u in after] == [False, False, True]
    assert after[-1].run.status == cpb.RUN_STATUS_COMPLETED
    everything = before + after
    ids = [u.event.id for u in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(u.run.id == run_id and not u.run.steps and not u.run.events for u in everything)

    # Resuming after each event id gives exactly the events after it, then ends.
    for i, update in enumerate(everything):
        resumed = watch(cluster, run_id, after=update.event.id).rest()
        assert [u.event.id for u in resumed] == ids[i + 1 :]


def test_watch_run_reconnect_mid_run_misses_nothing(cluster: Cluster, gate_files: dict[str, str]) -> None:
    start_basic_worker(cluster)
    run_id = trigger(cluster, "gated", gate_files)
    first = watch(cluster, run_id)
    seen = first.until("step_recorded")
    first.cancel()
    Path(gate_files["release"]).write_text("go")  # the run goes on while nobody watches
    second = watch(cluster, run_id, after=seen[-1].event.id).rest()
    all_ids = [u.event.id for u in seen + second]
    assert len(all_ids) == len(set(all_ids))
    assert kinds(seen + second) == [
        "triggered",
        "attempt_started",
        "step_recorded:first",
        "step_recorded:gate",
        "step_recorded:after",
        "completed",
    ]
    assert second[-1].done


def test_watch_runs_follows_its_task_only(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    stub = run_stub(cluster)
    echo = Stream(stub.WatchRuns(rpb.WatchRunsRequest(task_id="echo"), timeout=60))
    tagged = Stream(stub.WatchRuns(rpb.WatchRunsRequest(tags=["blue"]), timeout=60))
    # A stream starts from the call: its headers say it has its starting point.
    echo.call.initial_metadata()
    tagged.call.initial_metadata()
    other = trigger(cluster, "three-steps", {"x": 1}, tags=["blue"])
    mine = trigger(cluster, "echo", {"i": 1})
    got = echo.until("completed")
    assert {u.run.id for u in got} == {mine}, kinds(got)
    assert kinds(got) == ["triggered", "attempt_started", "completed"]
    assert got[-1].done
    blue = tagged.until("completed")
    assert {u.run.id for u in blue} == {other}
    assert kinds(blue)[-1] == "completed"
    echo.cancel()
    tagged.cancel()


def test_watch_bad_input(cluster: Cluster) -> None:
    start_basic_worker(cluster)
    stub = run_stub(cluster)

    def refused(request: Any, method: str = "WatchRun") -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            list(getattr(stub, method)(request, timeout=RPC_TIMEOUT))
        return info.value

    unknown = refused(rpb.WatchRunRequest(run_id=str(uuid.uuid4())))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND, unknown
    bad = refused(rpb.WatchRunRequest(run_id="nope"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in bad.details()
    negative = refused(rpb.WatchRunRequest(run_id=str(uuid.uuid4()), after_event_id=-1))
    assert negative.code() == grpc.StatusCode.INVALID_ARGUMENT and "after_event_id" in negative.details()
    first = trigger(cluster, "echo", 1)
    second = trigger(cluster, "echo", 2)
    first_events = watch(cluster, first).rest()
    foreign = refused(rpb.WatchRunRequest(run_id=second, after_event_id=first_events[0].event.id))
    assert foreign.code() == grpc.StatusCode.INVALID_ARGUMENT and "after_event_id" in foreign.details()
    task = refused(rpb.WatchRunsRequest(task_id="bad id!"), "WatchRuns")
    assert task.code() == grpc.StatusCode.INVALID_ARGUMENT and "task_id" in task.details()
    namespace = refused(rpb.WatchRunsRequest(namespace="bad ns!"), "WatchRuns")
    assert namespace.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_python_client_watch(cluster: Cluster, gate_files: dict[str, str]) -> None:
    """Client.watch yields RunUpdate dataclasses as they happen and ends with
    the run; AsyncClient.watch resumes after an event id; NotFoundError for an
    unknown run."""
    start_basic_worker(cluster)
    run_id = trigger(cluster, "gated", gate_files)
    with Client(address=cluster.address) as client:
        items: queue.Queue[Any] = queue.Queue()

        def read() -> None:
            try:
                for update in client.watch(run_id):
                    items.put(update)
            except Exception as exc:  # noqa: BLE001 - handed to the test
                items.put(exc)
            items.put(END)

        threading.Thread(target=read, daemon=True).start()

        def until_end_or(kind: str | None) -> list[RunUpdate]:
            got: list[RunUpdate] = []
            while (item := items.get(timeout=DEADLINE)) is not END:
                assert not isinstance(item, Exception), item
                got.append(item)
                if kind and item.event.type == kind:
                    break
            return got

        before = until_end_or("step_recorded")
        assert [u.event.type for u in before] == ["triggered", "attempt_started", "step_recorded"]
        assert before[-1].run.status == RunStatus.EXECUTING and not before[-1].done
        assert items.empty()
        Path(gate_files["release"]).write_text("go")
        after = until_end_or(None)
        assert [u.event.type for u in after] == ["step_recorded", "step_recorded", "completed"]
        assert after[-1].done and after[-1].run.status == RunStatus.COMPLETED
        assert all(isinstance(u, RunUpdate) and u.run.id == run_id for u in before + after)
        with pytest.raises(NotFoundError):
            list(client.watch(str(uuid.uuid4())))

    async def resumed() -> list[int]:
        async with AsyncClient(address=cluster.address) as aclient:
            return [u.event.id async for u in aclient.watch(run_id, after_event_id=before[1].event.id)]

    assert asyncio.run(resumed()) == [u.event.id for u in before[2:] + after]


class Watcher:
    """`cairn runs watch ARGS...` as a process whose stdout lines are read on a
    thread into a queue (then END)."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cairn_cli", "runs", "watch", *args, "--address", cluster.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=str(REPO_ROOT),
        )
        self.lines: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(END)

    def until(self, word: str) -> list[str]:
        got = []
        while True:
            line = self.lines.get(timeout=DEADLINE)
            assert line is not END, f"cairn runs watch ended before {word!r}: {got}"
            got.append(line)
            if word in line.split():
                return got

    def rest(self) -> tuple[list[str], int, str]:
        got = []
        while (line := self.lines.get(timeout=DEADLINE)) is not END:
            got.append(line)
        code = self.process.wait(timeout=DEADLINE)
        assert self.process.stderr is not None
        return got, code, self.process.stderr.read()


def test_cli_runs_watch(cluster: Cluster, gate_files: dict[str, str], tmp_path: Path) -> None:
    """`cairn runs watch` prints each change as it happens and exits 0 when the run
    completed; --json --after resumes as run_json objects; 1 for a canceled run;
    an unknown run is one error line."""
    start_basic_worker(cluster)
    run_id = trigger(cluster, "gated", gate_files)
    watcher = Watcher(cluster, run_id)
    before = watcher.until("first")  # held at the gate: what happened so far is printed
    assert [line.split()[1] for line in before] == ["triggered", "attempt_started", "step_recorded"]
    assert before[-1].split()[2:] == ["attempt", "1", "executing", "first"]
    assert watcher.lines.empty() and watcher.process.poll() is None
    Path(gate_files["release"]).write_text("go")
    after, code, err = watcher.rest()
    assert code == 0, err
    assert [line.split()[1] for line in after] == ["step_recorded", "step_recorded", "completed"]
    assert after[-1].split()[-1] == "completed" and err == ""

    events = watch(cluster, run_id).rest()
    resumed, code, _ = Watcher(cluster, run_id, "--json", "--after", str(events[2].event.id)).rest()
    assert code == 0
    objects = [json.loads(line) for line in resumed]
    assert [o["event"]["id"] for o in objects] == [u.event.id for u in events[3:]]
    assert objects[0]["event"]["details"]["name"] == "gate"
    assert objects[-1]["done"] is True and objects[-1]["run"]["status"] == "completed"
    assert [o["done"] for o in objects[:-1]] == [False] * (len(objects) - 1)

    held = {"counter": str(tmp_path / "c2"), "release": str(tmp_path / "r2")}
    canceled = trigger(cluster, "gated", held)
    watcher = Watcher(cluster, canceled)
    watcher.until("first")
    run_stub(cluster).CancelRun(rpb.CancelRunRequest(run_id=canceled), timeout=RPC_TIMEOUT)
    lines, code, err = watcher.rest()
    assert code == 1, (lines, err)
    assert "canceled" in lines[-1].split(), lines

    lines, code, err = Watcher(cluster, str(uuid.uuid4())).rest()
    assert lines == [] and code == 1
    assert err.startswith("error:") and "Traceback" not in err and len(err.splitlines()) == 1
