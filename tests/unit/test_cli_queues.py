"""The `cairn` command line's queue features (cairn_cli): rates and durations as
flags, parsing `cairn queues ...`, `--concurrency-key` and `worker --queue`, and
`cairn queues list/update/pause/resume`, `trigger --concurrency-key` and
`worker --queue` against a stand-in for the frontend. No cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

import worker_sdk
from cairn.run_json import queue_to_dict, run_to_dict
from cairn.v1 import common_pb2
from cairn.v1 import queue_service_pb2 as qpb
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli

# ---- the CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, rate",
    [
        ("10/1s", (10, 1.0)),
        ("10/s", (10, 1.0)),
        ("100/1m", (100, 60.0)),
        ("5/30s", (5, 30.0)),
        ("2/500ms", (2, 0.5)),
        ("1/1h30m", (1, 5400.0)),
        ("0", (0, 0.0)),
        ("off", (0, 0.0)),
    ],
)
def test_cli_rates(text: str, rate: tuple[int, float]) -> None:
    assert cli.parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "x/1s", "10/", "10/0s", "-1/1s", "10/1y"])
def test_cli_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        cli.parse_rate(text)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (1, "1s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (86400 + 60, "1d1m"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
    ],
)
def test_cli_format_duration(seconds: float, text: str) -> None:
    assert cli.format_duration(seconds) == text
    assert cli.parse_duration(text) == seconds


def test_cli_parses_queue_commands_and_flags() -> None:
    parser = cli._parser()
    args = parser.parse_args(["trigger", "t", "--concurrency-key", "tenant-1"])
    assert args.concurrency_key == "tenant-1"
    args = parser.parse_args(["worker", "examples.hello", "--queue", "video", "--queue", "mail"])
    assert args.queue == ["video", "mail"]
    assert parser.parse_args(["worker", "examples.hello"]).queue is None
    args = parser.parse_args(
        ["queues", "update", "video", "--limit", "5", "--rate", "10/1s", "--max-depth", "100"]
    )
    assert (args.name, args.limit, args.rate, args.max_depth) == ("video", 5, (10, 1.0), 100)
    args = parser.parse_args(["queues", "update", "video"])
    assert (args.limit, args.rate, args.max_depth) == (None, None, None)
    assert parser.parse_args(["queues", "list", "--json"]).json is True
    for sub in ("pause", "resume"):
        assert parser.parse_args(["queues", sub, "video"]).name == "video"


def test_cli_bad_rate_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["queues", "update", "video", "--rate", "fast"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--rate" in err


class FakeClient:
    """Stands in for the CLI's connection to the frontend (cairn_cli.frontend.Frontend)."""

    instances: list[FakeClient] = []

    def __init__(self, address: str | None = None, namespace: str | None = None, **options: Any) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        FakeClient.instances.append(self)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _queue(self, name: str, **fields: Any) -> dict[str, Any]:
        q = queue_to_dict(qpb.Queue(name=name))
        q.update(fields)
        return q

    def list_queues(self) -> list[dict[str, Any]]:
        return [
            self._queue(
                "video",
                concurrency_limit=5,
                rate_limit={"limit": 10, "period": 1.0},
                max_depth=100,
                depth=7,
                running=5,
            ),
            self._queue("email", paused=True),
        ]

    def update_queue(self, name: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("update_queue", name, kwargs))
        return self._queue(name, concurrency_limit=kwargs["concurrency_limit"] or 0)

    def pause_queue(self, name: str) -> dict[str, Any]:
        return self._queue(name, paused=True)

    def resume_queue(self, name: str) -> dict[str, Any]:
        return self._queue(name)

    def trigger(self, task_id: str, payload: Any, **kwargs: Any) -> Any:
        self.calls.append(("trigger", task_id, kwargs))
        return run_to_dict(
            common_pb2.Run(id="r1", task_id=task_id, concurrency_key=kwargs.get("concurrency_key") or "")
        )


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.instances = []
    monkeypatch.setattr(cli_frontend, "Frontend", FakeClient)
    return FakeClient


def _exit_code(argv: list[str]) -> Any:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


def test_cli_queues_list(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["queues", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "LIMIT", "RATE", "MAX_DEPTH", "PAUSED", "DEPTH", "RUNNING"]
    assert lines[1].split() == ["video", "5", "10/1s", "100", "no", "7", "5"]
    assert lines[2].split() == ["email", "-", "-", "-", "yes", "0", "0"]
    assert _exit_code(["queues", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["video", "email"]
    assert rows[0]["rate_limit"] == {"limit": 10, "period": 1.0}


def test_cli_queues_update_pause_resume(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["queues", "update", "video", "--limit", "3", "--rate", "10/1m"]) == 0
    assert fake_client.instances[-1].calls == [
        ("update_queue", "video", {"concurrency_limit": 3, "rate_limit": (10, 60.0), "max_depth": None})
    ]
    assert "queue    video" in capsys.readouterr().out
    assert _exit_code(["queues", "pause", "video"]) == 0
    assert "paused" in capsys.readouterr().out
    assert _exit_code(["queues", "resume", "video", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paused"] is False


def test_cli_trigger_passes_the_concurrency_key(
    fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["trigger", "t", "--concurrency-key", "tenant-1", "--json"]) == 0
    [(_, task_id, kwargs)] = fake_client.instances[-1].calls
    assert task_id == "t" and kwargs["concurrency_key"] == "tenant-1"
    assert json.loads(capsys.readouterr().out)["concurrency_key"] == "tenant-1"
    assert _exit_code(["trigger", "t"]) == 0
    assert "concurrency_key" not in fake_client.instances[-1].calls[0][2]


def test_cli_worker_passes_the_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = {}

    class FakeWorker:
        def __init__(self, module: str, **kwargs: Any) -> None:
            made.update(kwargs, module=module)

        def run_sync(self) -> None:
            pass

    monkeypatch.setattr(worker_sdk, "Worker", FakeWorker)
    cli.main(["worker", "examples.hello", "--queue", "video", "--queue", "email"])
    assert made["module"] == "examples.hello" and made["queues"] == ["video", "email"]
