"""`cairn runs watch RUN_ID` against a stand-in for the frontend: one line per
change (time, event type, attempt, the run's status), --json as
run_json.run_update_to_dict one object per line, exit status 0 when the run
completed and 1 otherwise, --after passed on, Ctrl-C quiet; and
Frontend.watch_run on a fake stub: it reconnects after its last event when the
frontend is unreachable, and cancels the call. No cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from cairn.run_json import event_to_dict, run_summary_to_dict, run_update_to_dict
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli

REAL_FRONTEND = cli_frontend.Frontend
RUN = "2b1f6d1e-0000-4000-8000-000000000001"


def update(event_id: int, kind: str, status: int, done: bool = False, **details: Any) -> rpb.RunUpdate:
    event = cpb.RunEvent(
        id=event_id, type=kind, attempt=1 if event_id > 1 else 0, details_json=json.dumps(details)
    )
    event.at.FromSeconds(1_700_000_000 + event_id)
    return rpb.RunUpdate(event=event, run=cpb.Run(id=RUN, task_id="orders", status=status), done=done)  # type: ignore[arg-type]


def history(final: int = cpb.RUN_STATUS_COMPLETED, kind: str = "completed") -> list[rpb.RunUpdate]:
    return [
        update(1, "triggered", cpb.RUN_STATUS_QUEUED),
        update(2, "attempt_started", cpb.RUN_STATUS_EXECUTING),
        update(3, "step_recorded", cpb.RUN_STATUS_EXECUTING, name="charge"),
        update(4, kind, final, done=True),
    ]


class FakeClient:
    """Stands in for cairn_cli.frontend.Frontend."""

    updates: list[rpb.RunUpdate] = []
    interrupt_after: int | None = None
    error: Exception | None = None
    afters: list[int] = []
    status = cpb.RUN_STATUS_COMPLETED

    def __init__(self, address: str | None = None, namespace: str | None = None, **options: Any) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def watch_run(self, run_id: str, after_event_id: int = 0) -> Iterator[dict[str, Any]]:
        assert run_id == RUN
        FakeClient.afters.append(after_event_id)
        if FakeClient.error is not None:
            raise FakeClient.error
        for i, u in enumerate(u for u in FakeClient.updates if u.event.id > after_event_id):
            if FakeClient.interrupt_after == i:
                raise KeyboardInterrupt
            yield dict(run_update_to_dict(u))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(run_summary_to_dict(cpb.Run(id=run_id, task_id="orders", status=FakeClient.status)))  # type: ignore[arg-type]


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(cli_frontend, "Frontend", FakeClient)
    FakeClient.updates = history()
    FakeClient.interrupt_after = None
    FakeClient.error = None
    FakeClient.afters = []
    FakeClient.status = cpb.RUN_STATUS_COMPLETED
    return FakeClient


def run_cli(argv: list[str]) -> Any:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


def test_watch_prints_one_line_per_change_and_exits_0_when_completed(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["runs", "watch", RUN]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].split() == ["22:13:21.000", "triggered", "-", "queued"]
    assert lines[1].split() == ["22:13:22.000", "attempt_started", "attempt", "1", "executing"]
    assert lines[2].split() == ["22:13:23.000", "step_recorded", "attempt", "1", "executing", "charge"]
    assert lines[3].split()[1:] == ["completed", "attempt", "1", "completed"]
    assert out.err == ""
    assert fake_client.afters == [0]


def test_watch_exits_1_when_the_run_ends_otherwise(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_client.updates = history(cpb.RUN_STATUS_FAILED, "attempt_failed")
    assert run_cli(["runs", "watch", RUN]) == 1
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] == "failed"


def test_watch_json_prints_each_update_as_run_json(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["runs", "watch", RUN, "--json", "--after", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [json.loads(json.dumps(run_update_to_dict(u))) for u in history()[2:]]
    assert lines[0]["event"]["details"] == {"name": "charge"}
    assert lines[-1]["done"] is True and lines[-1]["run"]["status"] == "completed"
    assert fake_client.afters == [2]


def test_watch_resumed_after_the_end_reads_the_status(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_client.status = cpb.RUN_STATUS_CANCELED
    assert run_cli(["runs", "watch", RUN, "--after", "4"]) == 1
    assert capsys.readouterr().out == ""


def test_watch_ctrl_c_is_quiet(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    fake_client.interrupt_after = 2
    assert run_cli(["runs", "watch", RUN]) == 130
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 2 and out.err == ""


def test_watch_unknown_run_is_one_error_line(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_client.error = cli_frontend.FrontendError("run not found", grpc.StatusCode.NOT_FOUND)
    assert run_cli(["runs", "watch", RUN]) == "error: run not found"


def test_watch_refuses_a_negative_after() -> None:
    # The real Frontend checks it before sending anything.
    frontend = REAL_FRONTEND(address="127.0.0.1:1")
    with pytest.raises(ValueError, match="--after"):
        next(frontend.watch_run(RUN, after_event_id=-1))


def test_run_update_to_dict() -> None:
    u = history()[2]
    d = run_update_to_dict(u)
    assert d["event"] == event_to_dict(u.event)
    assert d["run"] == run_summary_to_dict(u.run)
    assert d["done"] is False
    assert "attempts" not in d["run"]


# ---- Frontend.watch_run on a fake stub ------------------------------------------------


class FakeCall:
    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def __iter__(self) -> Iterator[rpb.WatchRunResponse]:
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            yield rpb.WatchRunResponse(updates=[item])


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"


class FakeStub:
    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = scripts
        self.requests: list[rpb.WatchRunRequest] = []
        self.calls: list[FakeCall] = []

    def WatchRun(self, request: rpb.WatchRunRequest, timeout: float | None = None) -> FakeCall:
        self.requests.append(request)
        self.calls.append(FakeCall(self.scripts.pop(0)))
        return self.calls[-1]


def frontend_with(monkeypatch: pytest.MonkeyPatch, stub: FakeStub) -> cli_frontend.Frontend:
    monkeypatch.setattr(cli_frontend, "WATCH_BACKOFF", 0.0)
    frontend = REAL_FRONTEND(address="127.0.0.1:1", namespace="ns")
    monkeypatch.setattr(frontend, "_runs", lambda: stub)
    return frontend


def test_frontend_watch_reconnects_after_its_last_event(monkeypatch: pytest.MonkeyPatch) -> None:
    h = history()
    stub = FakeStub([[h[0], h[1], Unavailable()], [Unavailable()], h[2:]])
    got = [u["event"]["id"] for u in frontend_with(monkeypatch, stub).watch_run(RUN)]
    assert got == [1, 2, 3, 4]
    assert [(r.namespace, r.run_id, r.after_event_id) for r in stub.requests] == [
        ("ns", RUN, 0),
        ("ns", RUN, 2),
        ("ns", RUN, 2),
    ]
    assert all(c.cancelled for c in stub.calls)


def test_frontend_watch_gives_up_when_the_frontend_stays_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnects for WATCH_RETRY_SECONDS in a row (30 s; 0.2 s here), then
    Unreachable saying for how long."""
    stub = FakeStub([[Unavailable()] for _ in range(100)])
    frontend = frontend_with(monkeypatch, stub)
    monkeypatch.setattr(cli_frontend, "WATCH_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(cli_frontend, "WATCH_BACKOFF", 0.01)
    with pytest.raises(cli_frontend.Unreachable, match=r"connection refused \(sent again for 0\.\d s\)"):
        list(frontend.watch_run(RUN))
    assert len(stub.requests) >= 3
