"""TLS settings, with certificates made here (trustme): the frontend's
--tls-cert/--tls-key/--tls-client-ca (and CAIRN_TLS_*) read and checked at
start, a pair given half or not matching refused naming the flag; the
clients' TLS (the SDK's tls=TLSConfig, the CLI's --tls-ca/--tls-cert/--tls-key,
else CAIRN_TLS_CA/CERT/KEY) read before anything is sent; and a TLS client
and server in process: the SDK and the CLI connect, with the key on the call,
and a plaintext client is refused. No cluster."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from cairn import credentials, keys
from cairn.v1 import common_pb2, run_service_pb2_grpc
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli import frontend as cli_frontend
from services.common import tls
from worker_sdk import AsyncClient, Client, InvalidArgumentError, TLSConfig, UnavailableError, Worker, task

KEY = keys.new_key()[1]


@task(id="tls_test_task")
async def tls_test_task(payload: Any) -> Any:
    return payload


class Files:
    def __init__(self, root: Path) -> None:
        ca, client_ca = trustme.CA(), trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = client_ca.issue_cert("client@cairn.test")
        self.ca = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        self.client_ca = root / "client-ca.pem"
        client_ca.cert_pem.write_to_path(str(self.client_ca))
        self.cert, self.key = root / "server.pem", root / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.client_cert, self.client_key = root / "client.pem", root / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))
        self.not_pem = root / "not.pem"
        self.not_pem.write_text("hello\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "CAIRN_TLS_CA",
        "CAIRN_TLS_CERT",
        "CAIRN_TLS_KEY",
        "CAIRN_TLS_CLIENT_CA",
        "CAIRN_TLS_SERVER_NAME",
        "CAIRN_API_KEY",
        "CAIRN_DEV_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def server_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    tls.add_flags(p)
    return p.parse_args(list(argv))


# ---- the server's flags ---------------------------------------------------------------------


def test_no_flags_no_tls() -> None:
    assert tls.from_args(server_args()) is None


def test_cert_and_key_and_client_ca(files: Files) -> None:
    plain = tls.from_args(server_args("--tls-cert", str(files.cert), "--tls-key", str(files.key)))
    assert plain is not None and not plain.mutual
    assert plain.cert == files.cert.read_bytes() and plain.key == files.key.read_bytes()
    assert plain.uvicorn_options()["ssl_cert_reqs"] == ssl.CERT_NONE
    mutual = tls.from_args(
        server_args(
            "--tls-cert",
            str(files.cert),
            "--tls-key",
            str(files.key),
            "--tls-client-ca",
            str(files.client_ca),
        )
    )
    assert mutual is not None and mutual.mutual and mutual.client_ca == files.client_ca.read_bytes()
    assert mutual.uvicorn_options()["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert isinstance(mutual.grpc_credentials(), grpc.ServerCredentials)


def test_the_flags_default_to_the_environment(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_TLS_CERT", str(files.cert))
    monkeypatch.setenv("CAIRN_TLS_KEY", str(files.key))
    found = tls.from_args(server_args())
    assert found is not None and found.cert_file == str(files.cert)
    monkeypatch.setenv("CAIRN_TLS_KEY", "")
    with pytest.raises(ValueError, match=r"--tls-cert \(or CAIRN_TLS_CERT\) is given but --tls-key"):
        tls.from_args(server_args())


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--tls-cert", "{cert}"], r"--tls-cert \(or CAIRN_TLS_CERT\) is given but --tls-key .* give both"),
        (["--tls-key", "{key}"], r"--tls-key \(or CAIRN_TLS_KEY\) is given but --tls-cert .* give both"),
        (["--tls-client-ca", "{client_ca}"], r"--tls-client-ca .* needs --tls-cert and --tls-key"),
        (["--tls-cert", "{cert}", "--tls-key", "{client_key}"], "do not make a certificate and its key"),
        (["--tls-cert", "{cert}", "--tls-key", "/no/such.key"], r"--tls-key .*: cannot read /no/such.key"),
        (["--tls-cert", "{not_pem}", "--tls-key", "{key}"], r"--tls-cert .*not.pem holds no PEM block"),
        (
            ["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{not_pem}"],
            r"--tls-client-ca .* holds no PEM block",
        ),
    ],
)
def test_a_bad_server_configuration_names_the_flag(files: Files, argv: list[str], match: str) -> None:
    paths = {
        name: str(getattr(files, name)) for name in ("cert", "key", "client_ca", "client_key", "not_pem")
    }
    with pytest.raises(ValueError, match=match):
        tls.from_args(server_args(*(a.format(**paths) for a in argv)))


# ---- the clients' TLS -----------------------------------------------------------------------


def test_client_tls_from_arguments_then_the_environment(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert credentials.client_tls() is None
    found = credentials.client_tls(str(files.ca))
    assert found == credentials.ClientTLS(ca=files.ca.read_bytes())
    monkeypatch.setenv("CAIRN_TLS_CA", str(files.client_ca))
    monkeypatch.setenv("CAIRN_TLS_CERT", str(files.client_cert))
    monkeypatch.setenv("CAIRN_TLS_KEY", str(files.client_key))
    monkeypatch.setenv("CAIRN_TLS_SERVER_NAME", "cairn.internal")
    from_env = credentials.client_tls()
    assert from_env is not None and from_env.ca == files.client_ca.read_bytes()
    assert from_env.cert == files.client_cert.read_bytes() and from_env.key == files.client_key.read_bytes()
    assert from_env.server_name == "cairn.internal"
    assert b"PRIVATE" not in repr(from_env).encode()
    mixed = credentials.client_tls(str(files.ca))  # a flag wins over its own variable only
    assert mixed is not None and mixed.ca == files.ca.read_bytes() and mixed.cert == from_env.cert
    # The SDK: a TLSConfig is used as given, without the environment.
    assert AsyncClient(tls=TLSConfig(ca=files.ca)).tls == credentials.ClientTLS(ca=files.ca.read_bytes())
    assert AsyncClient(tls=TLSConfig()).tls == credentials.ClientTLS()  # the system's roots
    assert AsyncClient().tls == from_env
    assert cli_frontend.Frontend(tls_ca=str(files.ca)).tls == mixed


def test_client_tls_errors_name_the_argument(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="--tls-cert is given but --tls-key"):
        credentials.client_tls(cert=str(files.client_cert))
    with pytest.raises(ValueError, match=r"--tls-ca: cannot read /no/ca.pem"):
        credentials.client_tls("/no/ca.pem")
    with pytest.raises(InvalidArgumentError, match=r"tls.key is given but tls.cert"):
        AsyncClient(tls=TLSConfig(key=files.client_key))
    with pytest.raises(InvalidArgumentError, match="tls.ca: the tls.ca given holds no PEM block"):
        Worker([tls_test_task], tls=TLSConfig(ca=b"nope"))
    monkeypatch.setenv("CAIRN_TLS_CA", str(files.not_pem))
    with pytest.raises(InvalidArgumentError, match="CAIRN_TLS_CA: .* holds no PEM block"):
        Client()
    with pytest.raises(ValueError, match="CAIRN_TLS_CA"):
        cli_frontend.Frontend()


# ---- in process: a TLS server and its clients -----------------------------------------------


class Recorder(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self) -> None:
        self.auth: list[str | None] = []
        self.lock = threading.Lock()

    def GetRun(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.auth.append(dict(context.invocation_metadata()).get("authorization"))
        return rpb.GetRunResponse(run=common_pb2.Run(id=request.run_id, task_id="t"))


@pytest.fixture
def tls_server(files: Files) -> Iterator[tuple[Recorder, str]]:
    fe = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(fe, server)
    found = tls.from_args(server_args("--tls-cert", str(files.cert), "--tls-key", str(files.key)))
    assert found is not None
    port = server.add_secure_port("127.0.0.1:0", found.grpc_credentials())
    server.start()
    yield fe, f"127.0.0.1:{port}"
    server.stop(0)


def test_the_sdk_and_the_cli_over_tls(tls_server: tuple[Recorder, str], files: Files) -> None:
    fe, address = tls_server

    async def calls() -> None:
        async with AsyncClient(address, api_key=KEY, tls=TLSConfig(ca=files.ca)) as client:
            assert (await client.get("r1")).id == "r1"

    asyncio.run(calls())
    with Client(address, tls=TLSConfig(ca=files.ca.read_bytes(), server_name="localhost")) as client:
        assert client.get("r2").id == "r2"
    with cli_frontend.Frontend(address, api_key=KEY, tls_ca=str(files.ca)) as cli:
        assert cli.get_run("r3")["id"] == "r3"
    assert fe.auth == [f"Bearer {KEY}", None, f"Bearer {KEY}"]

    def refused(tls: TLSConfig | None, run_id: str) -> None:
        with Client(address, rpc_timeout=3, tls=tls) as client:
            with pytest.raises(UnavailableError):
                client.get(run_id)

    # Plaintext, and a CA that did not sign the server's certificate: each is sent
    # again until its 3 s are over, so the two run at once.
    with futures.ThreadPoolExecutor(2) as pool:
        refusals = [
            pool.submit(refused, None, "r4"),
            pool.submit(refused, TLSConfig(ca=files.client_ca), "r5"),
        ]
    for refusal in refusals:
        refusal.result()
    assert len(fe.auth) == 3
