"""Trigger options, task options (schedule, timezone, max_duration), the JSON
shapes of runs, tokens and schedules, the Client's new calls (against in-memory
stubs) and the CLI's flags (no server)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from cairn import payloads
from cairn.run_json import run_to_dict, schedule_to_dict, token_to_dict
from cairn.v1 import common_pb2
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn_cli import main as cli
from worker_sdk import AsyncClient, Queue, _children, task
from worker_sdk._requests import trigger_options


async def _handler(payload: Any) -> Any:
    return payload


# ---- TriggerOptions ----------------------------------------------------------------------


def test_options_convert_to_trigger_options() -> None:
    opts = trigger_options(
        delay=timedelta(minutes=5),
        ttl=90,
        priority=7,
        tags=("a", "b"),
        metadata={"user": "ada", "n": 2, "nested": {"x": [1, None]}},
        max_duration=1.5,
    )
    assert opts.delay == Duration(seconds=300)
    assert opts.ttl == Duration(seconds=90)
    assert opts.max_duration == Duration(seconds=1, nanos=500_000_000)
    assert opts.priority == 7 and list(opts.tags) == ["a", "b"]
    assert opts.metadata["user"] == "ada" and opts.metadata["n"] == 2
    assert opts.metadata["nested"]["x"][1] is None


def test_no_options_leave_every_field_unset() -> None:
    opts = trigger_options()
    assert opts.ByteSize() == 0
    assert trigger_options(delay=0).HasField("delay")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"delay": -1}, ValueError, "delay must be at least 0"),
        ({"ttl": 0}, ValueError, "ttl must be greater than 0"),
        ({"max_duration": float("inf")}, ValueError, "max_duration must be finite"),
        ({"delay": "5m"}, TypeError, "delay must be a timedelta or a number"),
        ({"priority": 1.5}, TypeError, "priority must be an int"),
        ({"priority": True}, TypeError, "priority must be an int"),
        ({"priority": 2**31}, ValueError, "priority must be from -1000 to 1000"),
        ({"priority": 1001}, ValueError, "options.priority must be from -1000 to 1000, got 1001"),
        ({"priority": -1001}, ValueError, "options.priority must be from -1000 to 1000, got -1001"),
        ({"tags": "one"}, TypeError, "tags must be a list of strings"),
        ({"tags": ["ok", 3]}, TypeError, "tags must be non-empty strings"),
        ({"metadata": [1]}, TypeError, "metadata must be a dict"),
        ({"metadata": {1: "x"}}, TypeError, "metadata keys must be strings"),
        ({"metadata": {"x": object()}}, ValueError, "metadata: value is not JSON"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        trigger_options(**kwargs)


# ---- task options ------------------------------------------------------------------------


def test_task_schedule_timezone_and_max_duration_reach_the_definition() -> None:
    t = task(id="nightly", schedule="0 3 * * *", timezone="Europe/Paris", max_duration=timedelta(hours=1))(
        _handler
    )
    d = t._definition()
    assert (d.schedule, d.timezone) == ("0 3 * * *", "Europe/Paris")
    assert d.max_duration == Duration(seconds=3600)
    plain = task(id="plain")(_handler)._definition()
    assert (plain.schedule, plain.timezone) == ("", "")
    assert not plain.HasField("max_duration")


def test_queue_concurrency_limit_reaches_the_definition() -> None:
    t = task(id="v", queue=Queue("video", concurrency_limit=5))(_handler)
    assert t._definition().concurrency_limit == 5
    assert task(id="w", queue="video")(_handler)._definition().concurrency_limit == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"schedule": "61 * * * *"}, r"task 'bad': schedule '61 \* \* \* \*' is invalid: .*minute"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "task 'bad'.*Mars/Olympus"),
        ({"schedule": ""}, "task 'bad': schedule must be a non-empty cron expression"),
        ({"timezone": "UTC"}, "task 'bad': timezone 'UTC' is given without a schedule"),
        ({"max_duration": 0}, "task 'bad': max_duration must be greater than 0"),
    ],
)
def test_bad_task_options_fail_at_decoration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        task(id="bad", **kwargs)


# ---- JSON shapes -------------------------------------------------------------------------


def test_run_json_has_the_new_fields() -> None:
    run = common_pb2.Run(
        id="r",
        parent_run_id="p",
        priority=3,
        tags=["a"],
        child_run_ids=["c1", "c2"],
        schedule_id="task:nightly",
        wait=common_pb2.WaitInfo(kind="event", position=2, event_name="go", child_run_ids=[]),
    )
    run.metadata.update({"n": 1, "f": 1.5})
    run.ttl.FromSeconds(60)
    run.wait.until.FromSeconds(0)
    d = run_to_dict(run)
    assert (d["parent_run_id"], d["priority"], d["tags"]) == ("p", 3, ["a"])
    assert d["metadata"] == {"n": 1, "f": 1.5}
    assert d["child_run_ids"] == ["c1", "c2"]
    assert d["wait"] == {
        "kind": "event",
        "position": 2,
        "event_name": "go",
        "event_key": None,
        "token_id": None,
        "child_run_ids": [],
        "until": "1970-01-01T00:00:00.000Z",
    }
    assert (d["ttl"], d["max_duration"], d["schedule_id"]) == (60.0, None, "task:nightly")
    empty = run_to_dict(common_pb2.Run(id="e"))
    assert (empty["parent_run_id"], empty["wait"], empty["metadata"], empty["schedule_id"]) == (
        None,
        None,
        {},
        None,
    )


def test_token_and_schedule_json() -> None:
    token = wspb.WaitToken(id="t1", namespace="default", status=wspb.WAIT_TOKEN_STATUS_TIMED_OUT)
    assert token_to_dict(token)["status"] == "timed_out"
    token.status = wspb.WAIT_TOKEN_STATUS_COMPLETED
    token.payload.CopyFrom(common_pb2.Payload(data=b'{"ok":true}', encoding="json/plain"))
    d = token_to_dict(token)
    assert (d["id"], d["status"], d["payload"], d["run_id"]) == ("t1", "completed", {"ok": True}, None)
    sch = spb.Schedule(
        id="s1",
        task_id="report",
        cron="0 3 * * *",
        timezone="Europe/Paris",
        paused=True,
        declared=False,
        last_run_id="r9",
    )
    d = schedule_to_dict(sch)
    assert (d["id"], d["task"], d["cron"], d["timezone"], d["paused"], d["last_run_id"]) == (
        "s1",
        "report",
        "0 3 * * *",
        "Europe/Paris",
        True,
        "r9",
    )
    assert d["next_fire_at"] is None and d["deduplication_key"] is None


# ---- the client, against in-memory stubs -------------------------------------------------


class Recorder:
    """Stands in for the RunService, WaitService and ScheduleService stubs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, method: str) -> Any:
        responses = {
            "TriggerRun": lambda r: rpb.TriggerRunResponse(run=common_pb2.Run(id="r1", task_id=r.task_id)),
            "BatchTriggerRuns": lambda r: rpb.BatchTriggerRunsResponse(
                runs=[
                    rpb.TriggerRunResponse(run=common_pb2.Run(id=f"r{i}", task_id=item.task_id))
                    for i, item in enumerate(r.runs)
                ]
            ),
            "ListRuns": lambda r: rpb.ListRunsResponse(),
            "SendEvent": lambda r: wspb.SendEventResponse(delivered_run_ids=["a", "b"]),
            "CreateWaitToken": lambda r: wspb.CreateWaitTokenResponse(
                token=wspb.WaitToken(id="tok", status=wspb.WAIT_TOKEN_STATUS_PENDING)
            ),
            "CompleteWaitToken": lambda r: wspb.CompleteWaitTokenResponse(
                token=wspb.WaitToken(
                    id=r.token_id, status=wspb.WAIT_TOKEN_STATUS_COMPLETED, payload=r.payload
                )
            ),
            "CreateSchedule": lambda r: spb.CreateScheduleResponse(
                schedule=spb.Schedule(id=r.schedule_id, task_id=r.task_id, cron=r.cron, timezone=r.timezone)
            ),
            "ListSchedules": lambda r: spb.ListSchedulesResponse(
                schedules=[spb.Schedule(id="s1", task_id="x", cron="* * * * *")]
            ),
            "PauseSchedule": lambda r: spb.PauseScheduleResponse(
                schedule=spb.Schedule(id=r.schedule_id, paused=True)
            ),
            "DeleteSchedule": lambda r: spb.DeleteScheduleResponse(),
        }
        if method not in responses:
            raise AttributeError(method)

        async def call(request: Any, timeout: float | None = None) -> Any:
            self.calls.append((method, request))
            return responses[method](request)

        return call

    def request(self, method: str) -> Any:
        return [r for m, r in self.calls if m == method][-1]


def client_with(stub: Recorder) -> AsyncClient:
    client = AsyncClient(address="127.0.0.1:1", namespace="ns")
    client._stub = client._wait_stub = client._schedule_stub = stub  # type: ignore[assignment]
    return client


def test_client_trigger_options_batch_and_list_filters() -> None:
    stub = Recorder()
    child = task(id="child")(_handler)

    async def main() -> None:
        client = client_with(stub)
        await client.trigger("t", {"a": 1}, idempotency_key="k", delay=10, tags=["x"], metadata={"m": 1})
        req = stub.request("TriggerRun")
        assert (req.namespace, req.task_id, req.idempotency_key) == ("ns", "t", "k")
        assert req.options.delay == Duration(seconds=10) and list(req.options.tags) == ["x"]
        await client.trigger("t")
        # No option given: none sent, but the trace context when a test before set a tracer provider.
        sent = {field.name for field, _ in stub.request("TriggerRun").options.ListFields()}
        assert sent <= {"traceparent"}
        with pytest.raises(TypeError, match="unknown option.*delai"):
            await client.trigger("t", delai=3)

        runs = await client.batch_trigger(
            [("a", 1), (child, 2), {"task": "b", "payload": 3, "priority": 9, "idempotency_key": "bk"}]
        )
        assert [(r.id, r.task) for r in runs] == [("r0", "a"), ("r1", "child"), ("r2", "b")]
        batch = stub.request("BatchTriggerRuns")
        assert batch.namespace == "ns"
        assert [payloads.decode(r.payload.data, "json/plain") for r in batch.runs] == [1, 2, 3]
        assert batch.runs[2].options.priority == 9 and batch.runs[2].idempotency_key == "bk"
        assert await client.batch_trigger([]) == []
        with pytest.raises(ValueError, match="batch_trigger item 0: a dict item needs a 'task'"):
            await client.batch_trigger([{"payload": 1}])
        with pytest.raises(TypeError, match="batch_trigger item 1"):
            await client.batch_trigger([("a", 1), "b"])

        await client.list(tag="blue", parent_run_id="p1")
        req = stub.request("ListRuns")
        assert (req.tag, req.parent_run_id) == ("blue", "p1")

    asyncio.run(main())


def test_client_events_tokens_and_schedules() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        sent = await client.send_event("approval", {"ok": True}, run_id="r1", key="k")
        assert sent.delivered_run_ids == ["a", "b"] and not sent.buffered
        req = stub.request("SendEvent")
        assert (req.namespace, req.run_id, req.name, req.key) == ("ns", "r1", "approval", "k")
        assert payloads.decode(req.payload.data, "json/plain") == {"ok": True}

        token = await client.create_token(timedelta(minutes=1))
        assert token.id == "tok" and token.status == "pending"
        assert stub.request("CreateWaitToken").timeout == Duration(seconds=60)
        done = await client.complete_token("tok", [1, 2])
        assert done.status == "completed" and done.payload == [1, 2]

        sch = await client.create_schedule(
            "s1", "report", "0 3 * * *", timezone="Europe/Paris", payload={"p": 1}, deduplication_key="d"
        )
        req = stub.request("CreateSchedule")
        assert (req.schedule_id, req.task_id, req.cron, req.timezone, req.deduplication_key) == (
            "s1",
            "report",
            "0 3 * * *",
            "Europe/Paris",
            "d",
        )
        assert sch.task == "report" and sch.timezone == "Europe/Paris"
        assert [s.id for s in await client.list_schedules(task="x")] == ["s1"]
        assert stub.request("ListSchedules").task_id == "x"
        assert (await client.pause_schedule("s1")).paused is True
        assert await client.delete_schedule("s1") is None

    asyncio.run(main())


def test_task_trigger_outside_a_task_triggers_through_the_frontend(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = Recorder()
    child = task(id="child")(_handler)
    monkeypatch.setattr(_children, "make_stub", lambda cls, channel: stub)
    run = asyncio.run(child.trigger({"x": 1}, priority=2))
    assert run.id == "r1" and run.task == "child"
    req = stub.request("TriggerRun")
    assert req.options.priority == 2 and not req.parent_run_id


# ---- the CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("90", 90),
        ("1.5", 1.5),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("0", 0),
        (" 2H ", 7200),
        ("1.5h", 5400),
    ],
)
def test_cli_durations(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-3", "1h 30m", "inf", "nan", "s", "1e400"])
def test_cli_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        cli.parse_duration(text)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["trigger", "t", "--delay", "soon"], "--delay"),
        (["trigger", "t", "--ttl", "5y"], "--ttl"),
        (["trigger", "t", "--max-duration", "-1"], "--max-duration"),
        (["trigger", "t", "--metadata", "[1]"], "--metadata"),
        (["trigger", "t", "--metadata", "{bad"], "--metadata"),
        (["trigger", "t", "--priority", "high"], "--priority"),
        (["events", "send", "e", "--payload", "{bad"], "--payload"),
        (["tokens", "create", "--timeout", "x"], "--timeout"),
    ],
)
def test_cli_bad_flags_exit_2_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert flag in err


def test_cli_parses_the_new_commands() -> None:
    parser = cli._parser()
    args = parser.parse_args(
        [
            "trigger",
            "t",
            "--delay",
            "5m",
            "--ttl",
            "1h",
            "--priority",
            "3",
            "--tag",
            "a",
            "--tag",
            "b",
            "--metadata",
            '{"k": 1}',
            "--max-duration",
            "30",
        ]
    )
    assert (args.delay, args.ttl, args.priority, args.tag, args.metadata, args.max_duration) == (
        300,
        3600,
        3,
        ["a", "b"],
        {"k": 1},
        30,
    )
    args = parser.parse_args(["runs", "list", "--tag", "a", "--parent", "p1"])
    assert (args.tag, args.parent) == ("a", "p1")
    args = parser.parse_args(
        ["events", "send", "approval", "--run", "r1", "--key", "k", "--payload", '{"ok": true}', "--json"]
    )
    assert (args.name, args.run, args.key, args.payload, args.json) == (
        "approval",
        "r1",
        "k",
        {"ok": True},
        True,
    )
    args = parser.parse_args(["tokens", "complete", "tok", "--payload", "[1]"])
    assert (args.tokens_command, args.token_id, args.payload) == ("complete", "tok", [1])
    args = parser.parse_args(
        [
            "schedules",
            "create",
            "s1",
            "--task",
            "t",
            "--cron",
            "* * * * *",
            "--timezone",
            "Europe/Paris",
            "--dedup-key",
            "d",
        ]
    )
    assert (args.schedule_id, args.task, args.cron, args.timezone, args.dedup_key) == (
        "s1",
        "t",
        "* * * * *",
        "Europe/Paris",
        "d",
    )
    for sub in ("pause", "resume", "delete"):
        assert parser.parse_args(["schedules", sub, "s1"]).schedule_id == "s1"


def test_cli_shows_parent_children_tags_metadata_and_wait(capsys: pytest.CaptureFixture[str]) -> None:
    run = common_pb2.Run(
        id="r1",
        task_id="t",
        status=common_pb2.RUN_STATUS_WAITING,
        parent_run_id="p1",
        child_run_ids=["c1"],
        tags=["blue"],
        wait=common_pb2.WaitInfo(kind="event", position=3, event_name="approval", event_key="o-7"),
    )
    run.metadata.update({"progress": 50})
    cli._show(run_to_dict(run), as_json=False, full=True)
    out = capsys.readouterr().out
    assert "parent   p1" in out and "children c1" in out and "tags     blue" in out
    assert '"progress": 50' in out
    assert "waiting  for event 'approval' key 'o-7' at step 3" in out
