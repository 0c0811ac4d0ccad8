"""`cairn health [ADDRESS]`: asks a service's gRPC health service
(grpc.health.v1.Health/Check) whether it serves, and exits 0 when it answers
SERVING, 1 otherwise, with one line saying what it saw. The container image's
HEALTHCHECK and docker compose run it (grpc_health_probe is not in the image).

Without ADDRESS it checks the process of its own container: the address in
CAIRN_LISTEN (the variable every service listens on), with a wildcard host
(0.0.0.0, [::] or none) asked on loopback; else the frontend's default,
127.0.0.1:7373. Over TLS with --tls-ca (and --tls-cert/--tls-key for a
frontend that asks for client certificates), each falling back to its
CAIRN_TLS_* variable as the other client commands do."""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cairn.credentials import client_tls

DEFAULT_ADDRESS = "127.0.0.1:7373"
DEFAULT_TIMEOUT = 3.0
_WILDCARDS = ("", "0.0.0.0", "[::]", "::", "*")


def local_address(listen: str | None) -> str:
    """The address to check for a service listening on `listen` (host:port):
    the same, with a wildcard host replaced by loopback; the default when
    `listen` is empty."""
    listen = (listen or "").strip()
    if not listen:
        return DEFAULT_ADDRESS
    host, sep, port = listen.rpartition(":")
    if not sep:
        return listen
    if host in _WILDCARDS:
        return f"127.0.0.1:{port}"
    return listen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cairn health",
        description="Check a Cairn service's gRPC health service: exit 0 when it answers SERVING.",
    )
    p.add_argument(
        "address",
        nargs="?",
        default=None,
        help="host:port to check (default: CAIRN_LISTEN with a wildcard host on loopback, "
        f"else {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--service",
        default="",
        help="the service name to ask about, e.g. cairn.v1.RunService (default '': the whole server)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--tls-ca", default=None, metavar="FILE", help="check over TLS, trusting this CA (CAIRN_TLS_CA)"
    )
    p.add_argument(
        "--tls-cert", default=None, metavar="FILE", help="client certificate for mutual TLS (CAIRN_TLS_CERT)"
    )
    p.add_argument("--tls-key", default=None, metavar="FILE", help="its private key (CAIRN_TLS_KEY)")
    p.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="the name the certificate must carry (CAIRN_TLS_SERVER_NAME)",
    )
    return p


def check(
    address: str,
    service: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
) -> tuple[bool, str]:
    """(serving, what was seen): the status name, or the gRPC error."""
    options: list[tuple[str, str | int]] = [("grpc.enable_retries", 0)]
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        channel = grpc.secure_channel(address, credentials, options=options)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    address = args.address or local_address(os.environ.get("CAIRN_LISTEN"))
    try:
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    credentials = None
    if tls is not None:
        credentials = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
    serving, seen = check(
        address, args.service, args.timeout, credentials, tls.server_name if tls is not None else None
    )
    what = f"{address}{' service ' + args.service if args.service else ''}"
    if not serving:
        sys.exit(f"unhealthy: {what}: {seen}")
    print(f"{what}: {seen}")
