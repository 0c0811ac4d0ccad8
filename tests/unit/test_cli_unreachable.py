"""A CLI command that has never reached a frontend fails fast, and says why; one
that has reached it waits out a restart, as before.

- The classification (cairn_cli.unreachable): an unknown host, nothing
  listening, a server that is not a Cairn frontend, no TLS connection, a
  frontend that stopped answering, each its own line saying what to do; gRPC
  targets (dns:///..., ipv4:...) by gRPC's own words.
- first_contact (cairn_cli.channel): None at once for a gRPC server, gRPC's
  reason within its window for a port where nothing listens.
- The CLI's Frontend: Unreachable within a few seconds when nothing listens
  (not after resend.RESEND_SECONDS), and a frontend that answered once and then
  restarts mid-command is waited for: the call succeeds against the new one.

Small in-process gRPC servers and sockets; no cluster. The same commands as
child processes are in tests/cluster/test_cli_first_hour.py."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from cairn import resend
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc
from cairn_cli import channel as cli_channel
from cairn_cli import frontend as cli_frontend
from cairn_cli import unreachable
from cairn_cli.unreachable import unreachable_message

REFUSED = "connections to all backends failing; last error: UNKNOWN: ipv4:127.0.0.1:9: Connection refused"
UNRESOLVED = "errors resolving nowhere.invalid:7373: [field:hostname lookup error: Domain name not found]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[str]:
    """The address of a socket that accepts connections and says nothing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def http1() -> Iterator[str]:
    """The address of an HTTP/1.1 server (not gRPC), e.g. a frontend's HTTP API."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Runs(run_service_pb2_grpc.RunServiceServicer):
    """A RunService answering ListRuns with one run."""

    def ListRuns(self, request: Any, context: Any) -> rpb.ListRunsResponse:
        return rpb.ListRunsResponse(runs=[cpb.Run(id="r1", task_id="t")])


def serve(port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(Runs(), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


# ---- the classification --------------------------------------------------------------------


def test_nothing_listening_says_so_and_asks_for_cairn_dev() -> None:
    address = f"127.0.0.1:{free_port()}"
    assert unreachable.cause(address, REFUSED) == (
        unreachable.NO_LISTENER,
        f"nothing listens on {address} (connection refused)",
    )
    line = unreachable_message(address, Exception(REFUSED))
    assert line.startswith(f"error: cannot reach the Cairn frontend at {address}: nothing listens on ")
    assert "is `cairn dev` running?" in line and "--address or CAIRN_ADDRESS" in line
    # known once a frontend had answered too: it went away
    assert unreachable.cause(address, REFUSED, reached=True)[0] == unreachable.NO_LISTENER


def test_an_unknown_host_says_so_without_cairn_dev() -> None:
    address = "no-such-host.invalid:7373"
    assert unreachable.cause(address, UNRESOLVED)[0] == unreachable.UNKNOWN_HOST
    line = unreachable_message(address, Exception(UNRESOLVED))
    assert "the host 'no-such-host.invalid' is unknown (its name does not resolve)" in line
    assert "cairn dev" not in line and "--address or CAIRN_ADDRESS" in line


def test_grpc_targets_are_classified_by_grpcs_words() -> None:
    unknown, reason = unreachable.cause("dns:///nowhere.invalid:7373", UNRESOLVED)
    assert unknown == unreachable.UNKNOWN_HOST and UNRESOLVED in reason
    assert unreachable.cause("ipv4:127.0.0.1:9", REFUSED)[0] == unreachable.NO_LISTENER
    other = unreachable_message("dns:///cairn:7373", Exception("Socket closed"))
    assert "is not a Cairn frontend: did not answer over gRPC (Socket closed)" in other


def test_a_server_that_is_not_a_frontend_tls_and_a_frontend_that_stopped(listening: str) -> None:
    assert unreachable.cause(listening, "bad frame")[0] == unreachable.NOT_A_FRONTEND
    other = unreachable_message(listening, Exception("bad frame"))
    assert f"error: {listening} is not a Cairn frontend: it accepted a connection" in other
    assert "did not answer over gRPC (bad frame)" in other and "gRPC address" in other and "TLS" in other
    tls = unreachable_message(listening, Exception("handshake failed"), tls=True)
    assert tls.startswith(f"error: no TLS connection to the Cairn frontend at {listening} (handshake failed)")
    assert "--tls-ca" in tls
    stopped = unreachable_message(listening, Exception("x (sent again for 30.0 s)"), reached=True)
    assert stopped.startswith(f"error: the Cairn frontend at {listening} stopped answering (x (sent again")


# ---- first contact ---------------------------------------------------------------------------


def test_first_contact_with_a_grpc_server_is_at_once() -> None:
    server, port = serve()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        started = time.monotonic()
        assert cli_channel.first_contact(channel, within=10) is None
        assert time.monotonic() - started < 5
    finally:
        channel.close()
        server.stop(None)


@pytest.mark.parametrize("server", ["refused", "http1"])
def test_first_contact_gives_grpcs_reason(server: str, request: pytest.FixtureRequest) -> None:
    address = request.getfixturevalue("http1") if server == "http1" else f"127.0.0.1:{free_port()}"
    channel = grpc.insecure_channel(address)
    try:
        why = cli_channel.first_contact(channel, within=0.3)
    finally:
        channel.close()
    assert why is not None
    assert ("Connection refused" if server == "refused" else "HTTP/2") in why, why


# ---- the CLI's Frontend ----------------------------------------------------------------------


def test_a_command_that_never_reached_a_frontend_fails_fast() -> None:
    address = f"127.0.0.1:{free_port()}"
    with cli_frontend.Frontend(address=address, namespace="ns") as client:
        started = time.monotonic()
        with pytest.raises(cli_frontend.Unreachable, match="Connection refused") as info:
            client.list_runs()
        took = time.monotonic() - started
        assert not client.reached
    assert took < resend.RESEND_SECONDS / 3, took  # about FIRST_CONTACT_SECONDS
    assert not isinstance(info.value, cli_frontend.BackendDown)


def test_a_not_a_frontend_fails_fast_too(http1: str) -> None:
    with cli_frontend.Frontend(address=http1, namespace="ns") as client:
        with pytest.raises(cli_frontend.Unreachable) as info:
            client.list_runs()
    assert unreachable.cause(http1, str(info.value))[0] == unreachable.NOT_A_FRONTEND


def test_a_frontend_that_answered_once_is_waited_for_across_its_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frontend answers, stops, and is started again on its port once the
    command's next call has met it down: that call is answered by the new one
    (sent again for up to resend.RESEND_SECONDS, not FIRST_CONTACT_SECONDS)."""
    server, port = serve()
    client = cli_frontend.Frontend(address=f"127.0.0.1:{port}", namespace="ns")
    met_down = threading.Event()
    real_runs = client._runs

    class Watched:
        """The stub, saying when a ListRuns met the frontend down."""

        def __init__(self, stub: Any) -> None:
            self._stub = stub

        def ListRuns(self, request: Any, timeout: float | None = None) -> Any:
            try:
                return self._stub.ListRuns(request, timeout=timeout)
            except grpc.RpcError:
                met_down.set()
                raise

    try:
        assert [r["id"] for r in client.list_runs()] == ["r1"] and client.reached
        monkeypatch.setattr(client, "_runs", lambda: Watched(real_runs()))
        server.stop(None).wait()
        answer: list[Any] = []
        call = threading.Thread(target=lambda: answer.append(client.list_runs()))
        call.start()
        assert met_down.wait(timeout=20)
        server, _ = serve(port)
        call.join(timeout=resend.RESEND_SECONDS)
        assert not call.is_alive()
        assert answer and [r["id"] for r in answer[0]] == ["r1"], answer
    finally:
        client.close()
        server.stop(None)
