"""Concurrency keys, several frontends (the channel's target and service config),
the worker's queue filter, QueueFullError, queue management in the clients and
the `cairn queues` commands. No cluster: in-memory stubs and small in-process
gRPC servers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

import worker_sdk
from cairn.run_json import queue_to_dict, run_to_dict
from cairn.v1 import common_pb2, queue_service_pb2_grpc, run_service_pb2_grpc
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli
from worker_sdk import (
    AsyncClient,
    CairnError,
    Client,
    Queue,
    QueueFullError,
    RateLimit,
    UnavailableError,
    Worker,
    _children,
    _grpc,
    task,
)
from worker_sdk._requests import options_from_kwargs, trigger_options


async def _handler(payload: Any) -> Any:
    return payload


# ---- concurrency_key ---------------------------------------------------------------------


def test_concurrency_key_option() -> None:
    assert trigger_options(concurrency_key="tenant-1").concurrency_key == "tenant-1"
    assert trigger_options(concurrency_key="k" * 128).concurrency_key == "k" * 128
    assert trigger_options().concurrency_key == ""
    opts = options_from_kwargs("video.trigger_and_wait", {"concurrency_key": "t"})
    assert opts.concurrency_key == "t"


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("", ValueError, "concurrency_key must not be empty"),
        ("k" * 129, ValueError, "129 characters; at most 128"),
        (7, TypeError, "concurrency_key must be a string"),
    ],
)
def test_bad_concurrency_key(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        trigger_options(concurrency_key=value)


def test_run_json_concurrency_key() -> None:
    assert run_to_dict(common_pb2.Run(id="r", concurrency_key="t1"))["concurrency_key"] == "t1"
    assert run_to_dict(common_pb2.Run(id="r"))["concurrency_key"] is None


# ---- the clients, against an in-memory stub ----------------------------------------------


def _queue(name: str, **fields: Any) -> qpb.Queue:
    return qpb.Queue(name=name, namespace="ns", **fields)


class Recorder:
    """Stands in for the RunService and QueueService stubs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, method: str) -> Any:
        responses = {
            "TriggerRun": lambda r: rpb.TriggerRunResponse(
                run=common_pb2.Run(id="r1", task_id=r.task_id, concurrency_key=r.options.concurrency_key)
            ),
            "BatchTriggerRuns": lambda r: rpb.BatchTriggerRunsResponse(
                runs=[
                    rpb.TriggerRunResponse(run=common_pb2.Run(id=f"r{i}", task_id=item.task_id))
                    for i, item in enumerate(r.runs)
                ]
            ),
            "UpdateQueue": lambda r: qpb.UpdateQueueResponse(
                queue=_queue(
                    r.name,
                    concurrency_limit=r.concurrency_limit,
                    rate_limit=r.rate_limit,
                    max_depth=r.max_depth,
                    managed=True,
                )
            ),
            "ListQueues": lambda r: qpb.ListQueuesResponse(
                queues=[_queue("a", depth=3, running=1), _queue("b", paused=True)]
            ),
            "PauseQueue": lambda r: qpb.PauseQueueResponse(queue=_queue(r.name, paused=True)),
            "ResumeQueue": lambda r: qpb.ResumeQueueResponse(queue=_queue(r.name)),
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
    client._stub = client._queue_stub = stub  # type: ignore[assignment]
    return client


def test_client_sends_the_concurrency_key() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        run = await client.trigger("t", {}, concurrency_key="tenant-7")
        assert stub.request("TriggerRun").options.concurrency_key == "tenant-7"
        assert run.concurrency_key == "tenant-7"
        await client.batch_trigger([{"task": "t", "payload": 1, "concurrency_key": "a"}, ("t", 2)])
        batch = stub.request("BatchTriggerRuns")
        assert [r.options.concurrency_key for r in batch.runs] == ["a", ""]
        with pytest.raises(ValueError, match="concurrency_key must not be empty"):
            await client.trigger("t", concurrency_key="")

    asyncio.run(main())


def test_task_trigger_outside_a_task_sends_the_concurrency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = Recorder()
    monkeypatch.setattr(_children, "make_stub", lambda cls, channel: stub)
    child = task(id="child")(_handler)
    asyncio.run(child.trigger({"x": 1}, concurrency_key="k1"))
    assert stub.request("TriggerRun").options.concurrency_key == "k1"


def test_update_queue_sets_only_the_given_fields() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        q = await client.update_queue("video", concurrency_limit=5)
        req = stub.request("UpdateQueue")
        assert (req.namespace, req.name, req.concurrency_limit) == ("ns", "video", 5)
        assert req.HasField("concurrency_limit")
        assert not req.HasField("max_depth") and not req.HasField("rate_limit")
        assert q.concurrency_limit == 5 and q.managed is True

        await client.update_queue("video", concurrency_limit=0, max_depth=0)
        req = stub.request("UpdateQueue")
        assert req.HasField("concurrency_limit") and req.concurrency_limit == 0
        assert req.HasField("max_depth") and req.max_depth == 0

        q = await client.update_queue("video", rate_limit=(10, timedelta(minutes=1)), max_depth=100)
        req = stub.request("UpdateQueue")
        assert req.rate_limit.limit == 10 and req.rate_limit.period == Duration(seconds=60)
        assert not req.HasField("concurrency_limit") and req.max_depth == 100
        assert q.rate_limit == RateLimit(10, timedelta(seconds=60)) and q.max_depth == 100

        q = await client.update_queue("video", rate_limit=(0, 0))
        req = stub.request("UpdateQueue")
        assert req.HasField("rate_limit") and req.rate_limit.limit == 0
        assert q.rate_limit is None

        await client.update_queue("video")
        assert stub.request("UpdateQueue").ByteSize() == len(
            qpb.UpdateQueueRequest(namespace="ns", name="video").SerializeToString()
        )

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"concurrency_limit": -1}, ValueError, "concurrency_limit must be from 0"),
        ({"concurrency_limit": 2**31}, ValueError, "concurrency_limit must be from 0"),
        ({"concurrency_limit": 1.5}, TypeError, "concurrency_limit must be an int"),
        ({"max_depth": True}, TypeError, "max_depth must be an int"),
        ({"rate_limit": 10}, TypeError, r"rate_limit must be a \(limit, period\) pair"),
        ({"rate_limit": (10, 0)}, ValueError, "rate_limit period must be greater than 0"),
        ({"rate_limit": (10, "1s")}, TypeError, "rate_limit period must be a timedelta"),
        ({"rate_limit": (-1, 1)}, ValueError, "rate_limit limit must be from 0"),
    ],
)
def test_bad_queue_settings(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    client = client_with(Recorder())
    with pytest.raises(error, match=match):
        asyncio.run(client.update_queue("video", **kwargs))


def test_list_pause_and_resume_queues() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        queues = await client.list_queues()
        assert [(q.name, q.depth, q.running, q.paused) for q in queues] == [
            ("a", 3, 1, False),
            ("b", 0, 0, True),
        ]
        assert stub.request("ListQueues").namespace == "ns"
        assert (await client.pause_queue("video")).paused is True
        assert stub.request("PauseQueue").name == "video"
        assert (await client.resume_queue("video")).paused is False
        with pytest.raises(ValueError, match="queue name 'bad name' is invalid"):
            await client.pause_queue("bad name")

    asyncio.run(main())


def test_queue_json() -> None:
    q = qpb.Queue(
        name="video",
        namespace="default",
        concurrency_limit=3,
        max_depth=50,
        paused=True,
        depth=7,
        running=3,
        managed=True,
        rate_limit=qpb.RateLimit(limit=10, period=Duration(nanos=500_000_000)),
    )
    q.updated_at.FromSeconds(0)
    assert queue_to_dict(q) == {
        "name": "video",
        "namespace": "default",
        "concurrency_limit": 3,
        "rate_limit": {"limit": 10, "period": 0.5},
        "max_depth": 50,
        "paused": True,
        "depth": 7,
        "running": 3,
        "managed": True,
        "updated_at": "1970-01-01T00:00:00.000Z",
    }
    empty = queue_to_dict(qpb.Queue(name="x"))
    assert (empty["rate_limit"], empty["concurrency_limit"], empty["max_depth"], empty["updated_at"]) == (
        None,
        0,
        0,
        None,
    )


# ---- addresses and the channel -----------------------------------------------------------


def test_single_addresses_and_targets_go_to_grpc_unchanged() -> None:
    for address in (
        "127.0.0.1:7373",
        "cairn:7373",
        "dns:///cairn.internal:7373",
        "ipv4:10.0.0.1:7373,10.0.0.2:7373",
        "unix:///tmp/cairn.sock",
    ):
        assert _grpc.channel_target(address) == address
    assert _grpc.channel_target(" 127.0.0.1:7373 ") == "127.0.0.1:7373"
    with pytest.raises(ValueError, match="without a scheme"):
        _grpc.channel_target("http://a:1,http://b:1")


def test_a_list_of_ip_addresses_becomes_one_target() -> None:
    assert _grpc.channel_target("127.0.0.1:7373,127.0.0.1:7383") == ("ipv4:127.0.0.1:7373,127.0.0.1:7383")
    assert _grpc.channel_target(" 10.0.0.1 , 10.0.0.2:9000, ") == ("ipv4:10.0.0.1:7373,10.0.0.2:9000")
    assert _grpc.channel_target("[::1]:7373,[fd00::2]:7383") == "ipv6:[::1]:7373,[fd00::2]:7383"
    assert _grpc.channel_target("::1,[::1]:7383") == "ipv6:[::1]:7373,[::1]:7383"
    assert _grpc.channel_target("10.0.0.1:7373,10.0.0.1:7373") == "ipv4:10.0.0.1:7373"


@pytest.mark.parametrize(
    "address, match",
    [
        ("127.0.0.1:7373,[::1]:7373", "cannot mix IPv4 and IPv6"),
        ("127.0.0.1:x,127.0.0.1:7383", "the port must be a number"),
        ("127.0.0.1:0,127.0.0.1:7383", "the port must be a number"),
        ("127.0.0.1:,127.0.0.1:7383", "the port is missing"),
        (":7373,127.0.0.1:7383", "the host is missing"),
        ("[::1:7373,[::1]:7383", "missing ']'"),
        ("fe80::1::2,[::1]:1", "write an IPv6 address with a port as"),
        (",,", "names no frontend"),
        ("", "empty"),
    ],
)
def test_bad_address_lists(address: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _grpc.channel_target(address)
    with pytest.raises(ValueError, match=match):
        AsyncClient(address=address or " ")


def _fake_getaddrinfo(table: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in table[host]:
            if ":" in ip:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
        return out

    return getaddrinfo


def test_host_names_in_a_list_are_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        _fake_getaddrinfo(
            {
                "fe-a": ["10.0.0.1", "10.0.0.2", "fd00::1"],
                "fe-b": ["10.0.0.3"],
                "v6-a": ["fd00::1"],
                "v6-b": ["fd00::2", "fd00::3"],
            }
        ),
    )
    assert _grpc.channel_target("fe-a:7373,fe-b:7383") == ("ipv4:10.0.0.1:7373,10.0.0.2:7373,10.0.0.3:7383")
    assert _grpc.channel_target("fe-a,10.0.0.9:1") == "ipv4:10.0.0.1:7373,10.0.0.2:7373,10.0.0.9:1"
    assert _grpc.channel_target("v6-a:1,v6-b:2") == "ipv6:[fd00::1]:1,[fd00::2]:2,[fd00::3]:2"
    assert _grpc.channel_target("fe-a:1,[::1]:2") == "ipv6:[fd00::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="do not all have an address of the same family"):
        _grpc.channel_target("fe-b:1,v6-a:2")
    with pytest.raises(UnavailableError, match="cannot resolve frontend host 'nowhere'"):
        _grpc.channel_target("fe-a:1,nowhere:2")
    # Syntax is checked when a client is made; names are resolved only when it connects.
    assert AsyncClient(address="nowhere:1,fe-a:2").address == "nowhere:1,fe-a:2"


def test_the_address_list_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_ADDRESS", "127.0.0.1:7373,127.0.0.1:7383")
    client = AsyncClient()
    assert client.address == "127.0.0.1:7373,127.0.0.1:7383"
    assert _grpc.channel_target(client.address) == "ipv4:127.0.0.1:7373,127.0.0.1:7383"


def test_channel_options_and_service_config() -> None:
    options = dict(_grpc.channel_options())
    assert options["grpc.lb_policy_name"] == "round_robin"
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    config = json.loads(options["grpc.service_config"])
    [method_config] = config["methodConfig"]
    assert method_config["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert names == {
        ("cairn.v1.RunService", "GetRun"),
        ("cairn.v1.RunService", "ListRuns"),
        ("cairn.v1.RunService", "WaitRun"),
        ("cairn.v1.RunService", "CancelRun"),
        ("cairn.v1.WaitService", "GetWaitToken"),
        ("cairn.v1.QueueService", "ListQueues"),
        ("cairn.v1.QueueService", "UpdateQueue"),
        ("cairn.v1.QueueService", "PauseQueue"),
        ("cairn.v1.QueueService", "ResumeQueue"),
        ("cairn.v1.ScheduleService", "ListSchedules"),
        ("cairn.v1.WorkerService", "Heartbeat"),
        ("cairn.v1.WorkerService", "PollAttempt"),
        ("cairn.v1.WorkerService", "RegisterWorker"),
    }
    assert ("cairn.v1.RunService", "TriggerRun") not in names


# ---- against small in-process servers ----------------------------------------------------


class Frontend(run_service_pb2_grpc.RunServiceServicer, queue_service_pb2_grpc.QueueServiceServicer):
    """Answers GetRun (failing the first `unavailable` calls with UNAVAILABLE),
    refuses every TriggerRun with `trigger_code`, and lists one queue named after
    the server."""

    def __init__(
        self,
        name: str,
        unavailable: int = 0,
        trigger_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        trigger_message: str = "frontend is going away",
    ) -> None:
        self.name = name
        self.unavailable = unavailable
        self.trigger_code = trigger_code
        self.trigger_message = trigger_message
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def _count(self, method: str) -> int:
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            return self.calls[method]

    def GetRun(self, request: Any, context: Any) -> Any:
        if self._count("GetRun") <= self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return rpb.GetRunResponse(run=common_pb2.Run(id=request.run_id, task_id=self.name))

    def TriggerRun(self, request: Any, context: Any) -> Any:
        self._count("TriggerRun")
        context.abort(self.trigger_code, self.trigger_message)

    def ListQueues(self, request: Any, context: Any) -> Any:
        self._count("ListQueues")
        return qpb.ListQueuesResponse(queues=[qpb.Queue(name=self.name)])


def _serve(fe: Frontend) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(fe, server)
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(fe, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[grpc.Server] = []

    def start(fe: Frontend) -> int:
        server, port = _serve(fe)
        started.append(server)
        return port

    yield start
    for server in started:
        server.stop(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_idempotent_calls_are_retried_after_unavailable(servers: Any) -> None:
    fe = Frontend("one", unavailable=2)
    port = servers(fe)
    with Client(address=f"127.0.0.1:{port}", rpc_timeout=5) as client:
        assert client.get("r1").id == "r1"
        assert fe.calls["GetRun"] == 3
        with pytest.raises(UnavailableError, match="going away"):
            client.trigger("t")
        assert fe.calls["TriggerRun"] == 1  # TriggerRun is never retried by the channel


def test_a_list_spreads_calls_and_skips_a_dead_frontend(servers: Any) -> None:
    a, b = Frontend("a"), Frontend("b")
    address = f"127.0.0.1:{servers(a)},127.0.0.1:{_free_port()},127.0.0.1:{servers(b)}"
    with Client(address=address, rpc_timeout=5) as client:
        seen = {client.list_queues()[0].name for _ in range(20)}
    assert seen == {"a", "b"}


def test_resource_exhausted_is_queue_full(servers: Any) -> None:
    fe = Frontend(
        "one",
        trigger_code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        trigger_message="queue 'video' is full: 100 runs queued (max_depth 100)",
    )
    port = servers(fe)
    with Client(address=f"127.0.0.1:{port}") as client:
        with pytest.raises(QueueFullError, match="queue 'video' is full") as info:
            client.trigger("t")
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(info.value, CairnError) and worker_sdk.QueueFullError is QueueFullError


def test_an_oversized_message_is_not_queue_full() -> None:
    class TooLarge(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "Received message larger than max (70000000 vs. 67108864)"

    error = _grpc.to_cairn_error(TooLarge())
    assert type(error) is CairnError and "larger than max" in str(error)


# ---- the worker's queue filter -----------------------------------------------------------


def _tasks() -> list[Any]:
    return [
        task(id="encode", queue=Queue("video", concurrency_limit=2))(_handler),
        task(id="thumb", queue="video")(_handler),
        task(id="mail", queue="email")(_handler),
        task(id="report")(_handler),
    ]


def test_worker_serves_only_the_tasks_of_its_queues() -> None:
    tasks = _tasks()
    assert sorted(Worker(tasks, queues=["video"]).tasks) == ["encode", "thumb"]
    assert sorted(Worker(tasks, queues=["email", "report"]).tasks) == ["mail", "report"]
    assert sorted(Worker(tasks, queues="email").tasks) == ["mail"]
    assert Worker(tasks, queues=["video", "missing"]).queues == ["video"]
    assert len(Worker(tasks).tasks) == 4 and Worker(tasks).queues is None
    with pytest.raises(
        ValueError,
        match="no task is on queue\\(s\\) audio, music; the tasks' queues are email, report, video",
    ):
        Worker(tasks, queues=["music", "audio"])
    with pytest.raises(ValueError, match="at least one queue"):
        Worker(tasks, queues=[])


def test_worker_registers_and_polls_only_its_queues_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(_tasks(), address="127.0.0.1:1", queues=["video"])
    seen: dict[str, Any] = {}

    class Stub:
        async def RegisterWorker(self, request: Any, timeout: float) -> None:
            seen["registered"] = [t.task_id for t in request.tasks]
            worker.stop()

    async def main() -> None:
        worker._stop = asyncio.Event()
        worker._register_lock = asyncio.Lock()
        worker._stub = Stub()
        assert await worker._ensure_registered()

    asyncio.run(main())
    assert sorted(seen["registered"]) == ["encode", "thumb"]


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

    def __init__(self, address: str | None = None, namespace: str | None = None) -> None:
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
