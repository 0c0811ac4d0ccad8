"""The SDK's channel to one or several frontends: address lists and the channel's
target, the channel options and service config (which methods are retried), and,
against small in-process gRPC servers, retries after UNAVAILABLE, calls spread
over a list with a dead frontend skipped, and RESOURCE_EXHAUSTED as QueueFullError
(but not for an oversized message). No cluster."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import worker_sdk
from cairn.v1 import common_pb2, queue_service_pb2_grpc, run_service_pb2_grpc
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import AsyncClient, CairnError, Client, QueueFullError, UnavailableError, _grpc

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
        trigger_code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE,
        trigger_message: str = "frontend is going away",
    ) -> None:
        self.name = name
        self.unavailable = unavailable
        self.trigger_code = trigger_code
        self.trigger_message = trigger_message
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.request_ids: list[str] = []

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
        self.request_ids.append(request.request_id)
        if self.trigger_code is None:
            return rpb.TriggerRunResponse(run=common_pb2.Run(id="r-" + self.name, task_id=request.task_id))
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
    # The channel never sends TriggerRun again; the SDK does, with the request id
    # the trigger carries, until its time is up, then names the frontend.
    with Client(address=f"127.0.0.1:{port}", rpc_timeout=1) as client:
        with pytest.raises(UnavailableError, match="going away") as info:
            client.trigger("t")
    assert fe.calls["TriggerRun"] > 1 and len(set(fe.request_ids)) == 1 and fe.request_ids[0]
    message = str(info.value)
    assert message.startswith(f"cannot reach the Cairn frontend at 127.0.0.1:{port}: "), message
    assert "(sent again for " in message


def test_a_list_spreads_calls_and_skips_a_dead_frontend(servers: Any) -> None:
    a, b = Frontend("a"), Frontend("b")
    address = f"127.0.0.1:{servers(a)},127.0.0.1:{_free_port()},127.0.0.1:{servers(b)}"
    with Client(address=address, rpc_timeout=5) as client:
        seen = {client.list_queues()[0].name for _ in range(20)}
    assert seen == {"a", "b"}


def test_a_trigger_a_frontend_of_a_list_refuses_goes_to_another(servers: Any) -> None:
    """A frontend of the list answering UNAVAILABLE (say shutting down): the
    trigger is sent again, with its request id, and the round-robin channel
    gives it to the other frontend, which answers."""
    going, up = Frontend("going"), Frontend("up", trigger_code=None)
    address = f"127.0.0.1:{servers(going)},127.0.0.1:{servers(up)}"
    with Client(address=address, rpc_timeout=10) as client:
        runs = [client.trigger("t") for _ in range(6)]
    assert {r.id for r in runs} == {"r-up"}
    assert up.calls["TriggerRun"] == 6 and going.calls.get("TriggerRun", 0) >= 1
    for rid in going.request_ids:
        assert rid in up.request_ids  # the same trigger, sent again elsewhere


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
