"""`cairn runs replay`, `cairn workers list`, the hint of `cairn runs get` on a
queued run no connected worker serves, and the SDK's replay_of / WorkerInfo
conversions, against stand-ins for the frontend. No cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cairn.run_json import run_to_dict, worker_to_dict
from cairn.v1 import common_pb2
from cairn.v1 import queue_service_pb2 as qpb
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli
from worker_sdk import WorkerInfo, _convert

ORIGINAL = "11111111-1111-4111-8111-111111111111"
REPLAY = "22222222-2222-4222-8222-222222222222"


def worker(worker_id: str, tasks: list[str], connected: bool) -> qpb.WorkerInfo:
    w = qpb.WorkerInfo(worker_id=worker_id, version="v1", task_ids=tasks, slots=100, connected=connected)
    w.last_seen_at.FromSeconds(1_700_000_000)
    w.registered_at.FromSeconds(1_699_999_000)
    return w


class FakeClient:
    """Stands in for cairn_cli.frontend.Frontend."""

    workers: list[qpb.WorkerInfo] = []
    status = common_pb2.RUN_STATUS_QUEUED

    def __init__(self, address: str | None = None, namespace: str | None = None, **options: Any) -> None:
        self.calls: list[str] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def replay_run(self, run_id: str) -> dict[str, Any]:
        assert run_id == ORIGINAL
        run = common_pb2.Run(
            id=REPLAY, task_id="orders", status=common_pb2.RUN_STATUS_QUEUED, replay_of=run_id
        )
        return dict(run_to_dict(run))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(run_to_dict(common_pb2.Run(id=run_id, task_id="orders", status=FakeClient.status)))

    def list_workers(self) -> list[dict[str, Any]]:
        return [dict(worker_to_dict(w)) for w in FakeClient.workers]


def run_cli(argv: list[str]) -> Any:
    """cairn with these arguments: its exit status."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(cli_frontend, "Frontend", FakeClient)
    FakeClient.workers = []
    FakeClient.status = common_pb2.RUN_STATUS_QUEUED
    return FakeClient


def test_runs_replay_prints_the_new_run(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["runs", "replay", ORIGINAL]) == 0
    out = capsys.readouterr().out
    assert REPLAY in out and "queued" in out
    assert run_cli(["runs", "replay", ORIGINAL, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["id"] == REPLAY and printed["replay_of"] == ORIGINAL


def test_workers_list_as_a_table_and_json(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    FakeClient.workers = [worker("w-1", ["orders", "emails"], True), worker("w-2", ["orders"], False)]
    assert run_cli(["workers", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WORKER", "VERSION", "SLOTS", "RUNNING", "CONNECTED", "LAST_SEEN", "TASKS"]
    assert lines[1].split()[:5] == ["w-1", "v1", "100", "0", "yes"] and "orders, emails" in lines[1]
    assert lines[2].split()[:5] == ["w-2", "v1", "100", "0", "no"]
    assert run_cli(["workers", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {
        "worker_id": "w-1",
        "version": "v1",
        "task_ids": ["orders", "emails"],
        "slots": 100,
        "running": 0,
        "registered_at": "2023-11-14T21:56:40.000Z",
        "last_seen_at": "2023-11-14T22:13:20.000Z",
        "connected": True,
    }


HINT = "no connected worker serves task orders; start one: cairn worker MODULE"


@pytest.mark.parametrize(
    "workers, hinted",
    [
        ([], True),
        ([worker("w-1", ["orders"], False)], True),  # gone
        ([worker("w-1", ["other"], True)], True),  # connected, but serves another task
        ([worker("w-1", ["orders"], True)], False),
    ],
)
def test_runs_get_of_a_queued_run_hints_when_no_connected_worker_serves_its_task(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str], workers: list[Any], hinted: bool
) -> None:
    FakeClient.workers = workers
    assert run_cli(["runs", "get", ORIGINAL]) == 0
    assert (HINT in capsys.readouterr().out) is hinted


def test_the_hint_is_text_only_and_for_queued_or_delayed_runs(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["runs", "get", ORIGINAL, "--json"]) == 0
    out = capsys.readouterr().out
    assert HINT not in out and "replay_of" in json.loads(out)
    FakeClient.status = common_pb2.RUN_STATUS_DELAYED
    run_cli(["runs", "get", ORIGINAL])
    assert HINT in capsys.readouterr().out
    FakeClient.status = common_pb2.RUN_STATUS_COMPLETED
    run_cli(["runs", "get", ORIGINAL])
    assert HINT not in capsys.readouterr().out


def test_sdk_conversions_of_replay_of_and_workers() -> None:
    run = _convert.run(common_pb2.Run(id=REPLAY, task_id="orders", replay_of=ORIGINAL))
    assert run.replay_of == ORIGINAL
    assert _convert.run(common_pb2.Run(id=REPLAY, task_id="orders")).replay_of is None
    info = _convert.worker_info(worker("w-1", ["orders"], True))
    assert isinstance(info, WorkerInfo)
    assert (info.worker_id, info.version, info.task_ids, info.slots, info.connected) == (
        "w-1",
        "v1",
        ["orders"],
        100,
        True,
    )
    assert info.last_seen_at is not None and info.last_seen_at.year == 2023
    with pytest.raises(AttributeError):
        info.slots = 1  # type: ignore[misc]
