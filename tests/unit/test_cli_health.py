"""`cairn health`: the address it checks (CAIRN_LISTEN with a wildcard host on
loopback), exit 0 on SERVING and 1 with one line on NOT_SERVING, an unknown
service or nothing listening, and the same over TLS with --tls-ca (a CA made
here with trustme). gRPC servers in process; no cluster."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cairn_cli import health as health_cli
from cairn_cli.main import main


def _server(
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, health.HealthServicer, int]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, servicer, port


@pytest.fixture
def served() -> Iterator[tuple[health.HealthServicer, int]]:
    server, servicer, port = _server()
    try:
        yield servicer, port
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:7375", "127.0.0.1:7375"),
        ("[::]:7376", "127.0.0.1:7376"),
        (":7373", "127.0.0.1:7373"),
        ("10.1.2.3:7373", "10.1.2.3:7373"),
        ("", health_cli.DEFAULT_ADDRESS),
        (None, health_cli.DEFAULT_ADDRESS),
    ],
)
def test_local_address(listen: str | None, expected: str) -> None:
    assert health_cli.local_address(listen) == expected


def test_serving_exits_0(
    served: tuple[health.HealthServicer, int], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, port = served
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    main(["health", f"127.0.0.1:{port}"])  # returns: exit status 0
    assert "SERVING" in capsys.readouterr().out


def test_listen_variable_is_the_default_address(
    served: tuple[health.HealthServicer, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    servicer, port = served
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    monkeypatch.setenv("CAIRN_LISTEN", f"0.0.0.0:{port}")
    main(["health"])
    assert f"127.0.0.1:{port}: SERVING" in capsys.readouterr().out


def test_not_serving_exits_1(served: tuple[health.HealthServicer, int]) -> None:
    servicer, port = served
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    with pytest.raises(SystemExit) as exc:
        main(["health", f"127.0.0.1:{port}"])
    assert exc.value.code == f"unhealthy: 127.0.0.1:{port}: NOT_SERVING"


def test_unknown_service_exits_1(served: tuple[health.HealthServicer, int]) -> None:
    _, port = served
    with pytest.raises(SystemExit) as exc:
        main(["health", f"127.0.0.1:{port}", "--service", "no.such.Service"])
    assert "NOT_FOUND" in str(exc.value.code)


def test_nothing_listening_exits_1() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["health", "127.0.0.1:1", "--timeout", "2"])
    assert str(exc.value.code).startswith("unhealthy: 127.0.0.1:1: UNAVAILABLE")


def test_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CAIRN_TLS_CA", "CAIRN_TLS_CERT", "CAIRN_TLS_KEY", "CAIRN_TLS_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    credentials = grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), b"".join(p.bytes() for p in cert.cert_chain_pems))]
    )
    server, servicer, port = _server(credentials)
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        main(["health", f"127.0.0.1:{port}", "--tls-ca", str(ca_file)])
        monkeypatch.setenv("CAIRN_TLS_CA", str(ca_file))  # as the other client commands
        main(["health", f"127.0.0.1:{port}"])
        monkeypatch.delenv("CAIRN_TLS_CA")
        with pytest.raises(SystemExit):  # plaintext to a TLS port
            main(["health", f"127.0.0.1:{port}", "--timeout", "2"])
    finally:
        server.stop(None)
