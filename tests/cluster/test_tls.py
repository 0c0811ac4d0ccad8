"""TLS and mutual TLS on the frontend, with certificates made in the test
(trustme): a frontend serving gRPC and HTTPS from --tls-cert/--tls-key works
with the Python client (tls=TLSConfig), a `cairn worker` (CAIRN_TLS_CA), the
CLI (--tls-ca) and grpcurl (-cacert), and refuses plaintext; with
--tls-client-ca a client without a certificate signed by that CA is refused
(gRPC and HTTPS alike) and one with it works; a flag pair given half, or a key
that is not the certificate's, stops the frontend at start naming the flag."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import trustme
from api_helpers import start_basic_worker
from harness import Cluster, auth
from harness.cli import cairn_cli, cli_env
from harness.grpcurl import GRPCURL, json_field
from harness.processes import REPO_ROOT

from cairn import keys
from cairn_cli.embedded import free_port
from worker_sdk import AsyncClient, Client, TLSConfig, UnavailableError


@dataclass
class Pki:
    """The files of a test CA, a server certificate for 127.0.0.1 signed by it,
    and a client CA with a client certificate (for mutual TLS)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # signed by the server's CA, not the client CA
    other_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, client_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("worker@cairn.test")
    other = ca.issue_cert("intruder@cairn.test")

    def write(name: str, blob: Any) -> Path:
        path = d / name
        blob.write_to_path(str(path))
        return path

    def chain(name: str, leaf: trustme.LeafCert) -> Path:
        path = d / name
        path.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        return path

    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server_cert=chain("server.pem", server),
        server_key=write("server.key", server.private_key_pem),
        client_ca=write("client-ca.pem", client_ca.cert_pem),
        client_cert=chain("client.pem", client),
        client_key=write("client.key", client.private_key_pem),
        other_cert=chain("other.pem", other),
        other_key=write("other.key", other.private_key_pem),
    )


def server_args(pki: Pki, mutual: bool = False) -> tuple[str, ...]:
    args = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    return (*args, "--tls-client-ca", str(pki.client_ca)) if mutual else args


def tls_cluster(cluster_factory: Any, pki: Pki, mutual: bool) -> tuple[Cluster, str]:
    """A cluster whose frontend serves TLS (mutual when asked); its HTTPS address."""
    http = f"127.0.0.1:{free_port()}"
    client_pair = (pki.client_key.read_bytes(), pki.client_cert.read_bytes()) if mutual else (None, None)
    cluster = cluster_factory(
        env={"CAIRN_HTTP_ADDRESS": http},
        frontend_args=server_args(pki, mutual),
        frontend_credentials=grpc.ssl_channel_credentials(pki.ca.read_bytes(), *client_pair),
    )
    return cluster, http


def grpcurl(address: str, method: str, data: Any, *tls: str) -> subprocess.CompletedProcess[str]:
    """grpcurl with the session's key and the TLS arguments given (-cacert ...; -plaintext)."""
    argv = [GRPCURL, *tls, "-H", f"{keys.AUTHORIZATION}: {keys.BEARER}{auth.ADMIN_KEY}"]
    argv += ["-d", json.dumps(data), address, method]
    return subprocess.run(argv, capture_output=True, text=True, timeout=40)


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cairn_cli(cluster, *args)


def https_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


@dataclass
class TlsCluster:
    cluster: Cluster
    http: str  # its HTTPS address
    # `cairn runs get` calls that TLS must refuse, started with the clusters: the
    # CLI sends a refused read again for 30 s before it exits with its error, so
    # the module's refusals all wait out their 30 s at once, while the tests run.
    refusals: dict[str, Future[subprocess.CompletedProcess[str]]]


@pytest.fixture(scope="module")
def tls_clusters(module_cluster_factory: Any, pki: Pki) -> Iterator[dict[str, TlsCluster]]:
    """A cluster whose frontend serves TLS ("plain") and one with mutual TLS
    ("mutual"), each with its refused CLI calls under way. They read a run id
    that need not exist: the TLS handshake fails before any call (without TLS
    enforced the read would be answered, NOT_FOUND, which the tests refuse too)."""
    plain = tls_cluster(module_cluster_factory, pki, mutual=False)
    mutual = tls_cluster(module_cluster_factory, pki, mutual=True)
    run_id = str(uuid.uuid4())
    with ThreadPoolExecutor(3) as pool:
        yield {
            "plain": TlsCluster(
                *plain,
                {
                    "plaintext": pool.submit(cli, plain[0], "runs", "get", run_id),
                    "untrusted CA": pool.submit(
                        cli, plain[0], "runs", "get", run_id, "--tls-ca", str(pki.client_ca)
                    ),
                },
            ),
            "mutual": TlsCluster(
                *mutual,
                {
                    "no client certificate": pool.submit(
                        cli, mutual[0], "runs", "get", run_id, "--tls-ca", str(pki.ca)
                    )
                },
            ),
        }


def test_tls_with_the_client_a_worker_the_cli_grpcurl_and_https(
    tls_clusters: dict[str, TlsCluster], pki: Pki
) -> None:
    tc = tls_clusters["plain"]
    cluster, http, refusals = tc.cluster, tc.http, tc.refusals
    start_basic_worker(cluster, env={"CAIRN_TLS_CA": str(pki.ca)})  # `cairn worker` over TLS

    with Client(cluster.address, tls=TLSConfig(ca=pki.ca)) as client:
        run = client.trigger("three-steps", {"x": 2})
        done = client.wait(run.id, timeout=30)
    assert done.status == "completed", done
    assert done.output == {"sum": 12, "product": 24, "text": "sum=12 product=24"}

    async def from_async() -> str:
        async with AsyncClient(cluster.address, tls=TLSConfig(ca=pki.ca.read_bytes())) as client:
            run = await client.trigger("echo", {"via": "async"})
            return (await client.wait(run.id, timeout=30)).status

    assert asyncio.run(from_async()) == "completed"

    # The CLI: --tls-ca, and CAIRN_TLS_CA.
    triggered = cli(
        cluster, "trigger", "echo", "--payload", '{"via": "cli"}', "--wait", "--json", "--tls-ca", str(pki.ca)
    )
    assert triggered.returncode == 0, triggered.stderr
    cli_run = json.loads(triggered.stdout)
    assert cli_run["status"] == "completed" and cli_run["output"] == {"via": "cli"}
    env = {**cli_env(), "CAIRN_TLS_CA": str(pki.ca)}
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn_cli",
            "runs",
            "get",
            cli_run["id"],
            "--json",
            "--address",
            cluster.address,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["id"] == cli_run["id"]

    # grpcurl with -cacert.
    proc = grpcurl(cluster.address, "cairn.v1.RunService/GetRun", {"run_id": run.id}, "-cacert", str(pki.ca))
    assert proc.returncode == 0, proc.stderr
    assert json_field(json.loads(proc.stdout)["run"], "id") == run.id

    # HTTPS, with the CA.
    with httpx.Client(verify=https_context(pki), headers=auth.headers(), timeout=30) as web:
        answer = web.get(f"https://{http}/v1/runs/{run.id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["status"] == "completed"

    # Plaintext is refused, over gRPC and HTTP alike.
    with Client(cluster.address, rpc_timeout=5) as plain:
        with pytest.raises(UnavailableError):
            plain.get(run.id)
    assert (
        grpcurl(cluster.address, "cairn.v1.RunService/GetRun", {"run_id": run.id}, "-plaintext").returncode
        != 0
    )
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{http}/v1/runs/{run.id}", headers=auth.headers(), timeout=5)
    refused = refusals["plaintext"].result()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "--tls-ca" in refused.stderr, refused.stderr
    # A client that does not trust the CA is refused too.
    untrusted = refusals["untrusted CA"].result()
    assert untrusted.returncode == 1 and "Traceback" not in untrusted.stderr, untrusted.stderr
    assert "no TLS connection" in untrusted.stderr and "--tls-ca" in untrusted.stderr, untrusted.stderr


def test_mutual_tls_needs_a_client_certificate_signed_by_the_client_ca(
    tls_clusters: dict[str, TlsCluster], pki: Pki
) -> None:
    tc = tls_clusters["mutual"]
    cluster, http, refusals = tc.cluster, tc.http, tc.refusals
    worker_env = {
        "CAIRN_TLS_CA": str(pki.ca),
        "CAIRN_TLS_CERT": str(pki.client_cert),
        "CAIRN_TLS_KEY": str(pki.client_key),
    }
    start_basic_worker(cluster, env=worker_env)
    with_cert = TLSConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)

    with Client(cluster.address, tls=with_cert) as client:
        run = client.trigger("echo", {"mutual": True})
        assert client.wait(run.id, timeout=30).output == {"mutual": True}

    tls_ca = ("--tls-ca", str(pki.ca))
    # Each client below sends its read again for 5 s: the two run at once, the rest meanwhile.
    pool = ThreadPoolExecutor(2)

    def refused_without(tls: TLSConfig) -> None:
        with Client(cluster.address, rpc_timeout=5, tls=tls) as client:
            with pytest.raises(UnavailableError):
                client.get(run.id)

    # Without a client certificate, or with one the client CA did not sign: refused.
    sdk_refusals = [
        pool.submit(refused_without, tls)
        for tls in (TLSConfig(ca=pki.ca), TLSConfig(ca=pki.ca, cert=pki.other_cert, key=pki.other_key))
    ]

    mine = (*tls_ca, "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
    got = cli(cluster, "runs", "get", run.id, "--json", *mine)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["output"] == {"mutual": True}
    triggered = cli(cluster, "trigger", "echo", "--payload", "7", "--wait", "--json", *mine)
    assert triggered.returncode == 0 and json.loads(triggered.stdout)["output"] == 7, triggered.stderr
    half = cli(cluster, "runs", "get", run.id, *tls_ca, "--tls-cert", str(pki.client_cert))
    assert half.returncode == 2 and "--tls-key" in half.stderr, half.stderr

    method, data = "cairn.v1.RunService/GetRun", {"run_id": run.id}
    proc = grpcurl(
        cluster.address,
        method,
        data,
        "-cacert",
        str(pki.ca),
        "-cert",
        str(pki.client_cert),
        "-key",
        str(pki.client_key),
    )
    assert proc.returncode == 0, proc.stderr
    assert grpcurl(cluster.address, method, data, "-cacert", str(pki.ca)).returncode != 0

    url = f"https://{http}/v1/runs/{run.id}"
    with httpx.Client(
        verify=https_context(pki, pki.client_cert, pki.client_key), headers=auth.headers()
    ) as web:
        answer = web.get(url, timeout=30)
    assert answer.status_code == 200 and answer.json()["run"]["output"] == {"mutual": True}, answer.text
    with pytest.raises(httpx.HTTPError):
        with httpx.Client(verify=https_context(pki), headers=auth.headers()) as web:
            web.get(url, timeout=10)
    for refusal in sdk_refusals:
        refusal.result()
    pool.shutdown()
    refused = refusals["no client certificate"].result()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "no TLS connection" in refused.stderr and "--tls-cert and --tls-key" in refused.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (("--tls-cert", "{server_cert}"), ["--tls-cert", "--tls-key", "give both"]),
        (("--tls-key", "{server_key}"), ["--tls-key", "--tls-cert", "give both"]),
        (("--tls-client-ca", "{client_ca}"), ["--tls-client-ca", "needs --tls-cert and --tls-key"]),
        (
            ("--tls-cert", "{server_cert}", "--tls-key", "{client_key}"),
            ["do not make a certificate and its key"],
        ),
        (("--tls-cert", "{server_cert}", "--tls-key", "/nonexistent/key.pem"), ["--tls-key", "cannot read"]),
    ],
)
def test_a_bad_tls_configuration_stops_the_frontend_at_start(
    pki: Pki, tmp_path: Path, args: tuple[str, ...], words: list[str]
) -> None:
    files = {
        name: str(getattr(pki, name)) for name in ("server_cert", "server_key", "client_ca", "client_key")
    }
    argv = [a.format(**files) for a in args]
    env = {**cli_env(), "CAIRN_INSECURE_NO_AUTH": "1", "CAIRN_INTERNAL_CREDENTIAL": "x" * 32}
    proc = subprocess.run(
        [sys.executable, "-m", "cairn_cli", "frontend", "--listen", f"127.0.0.1:{free_port()}", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
