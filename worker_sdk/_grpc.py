"""The gRPC plumbing Worker and Client share: where to connect, the channel,
retrying transient failures and turning status codes into CairnError types."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from worker_sdk.errors import (AlreadyExistsError, CairnError, FailedPreconditionError,
                               InvalidArgumentError, NotFoundError, QueueFullError,
                               UnavailableError)

DEFAULT_ADDRESS = "127.0.0.1:7373"
DEFAULT_PORT = 7373
DEFAULT_NAMESPACE = "default"
# Journals and payloads can be large; the server enforces its own size limits.
_MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                   ("grpc.max_send_message_length", _MAX_MESSAGE),
                   # Each channel its own connections, reconnecting within 2 s: with
                   # gRPC's process-wide pool and default backoff (up to 120 s) a new
                   # client reused a connection still backing off from a restarted
                   # frontend and failed at once.
                   ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
# Bound of one write from an attempt (step record, finish, metadata, trigger).
WRITE_TIMEOUT = 10.0
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_ERRORS: dict[grpc.StatusCode, type[CairnError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: QueueFullError,
}
# gRPC itself answers RESOURCE_EXHAUSTED for an oversized message; that is not a full queue.
_MESSAGE_TOO_LARGE = re.compile(r"message larger than max", re.IGNORECASE)

# Methods that may be sent again after UNAVAILABLE: reads, long polls, and writes
# whose repetition changes nothing (cancel, queue settings, heartbeats, a poll that
# never reached matching, registration). TriggerRun is idempotent only with an
# idempotency key, so it is not retried here (the SDK surfaces UnavailableError).
RETRYABLE_METHODS: dict[str, tuple[str, ...]] = {
    "cairn.v1.RunService": ("GetRun", "ListRuns", "WaitRun", "CancelRun"),
    "cairn.v1.WaitService": ("GetWaitToken",),
    "cairn.v1.QueueService": ("ListQueues", "UpdateQueue", "PauseQueue", "ResumeQueue"),
    "cairn.v1.ScheduleService": ("ListSchedules",),
    "cairn.v1.WorkerService": ("Heartbeat", "PollAttempt", "RegisterWorker"),
}
RETRY_POLICY = {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s",
                "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
# A target that names its gRPC resolver, e.g. dns:///cairn.internal:7373 or ipv4:1.2.3.4:7373.
_SCHEME = re.compile(r"^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds|google-c2p):", re.IGNORECASE)

R = TypeVar("R")


def resolve_address(address: str | None) -> str:
    """The argument, else $CAIRN_ADDRESS, else 127.0.0.1:7373."""
    return address or os.environ.get("CAIRN_ADDRESS") or DEFAULT_ADDRESS


def resolve_namespace(namespace: str | None) -> str:
    """The argument, else $CAIRN_NAMESPACE, else "default"."""
    return namespace or os.environ.get("CAIRN_NAMESPACE") or DEFAULT_NAMESPACE


def service_config() -> str:
    """The channel's service config (JSON): UNAVAILABLE retried on idempotent methods."""
    names = [{"service": service, "method": method}
             for service, methods in RETRYABLE_METHODS.items() for method in methods]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}]})


def _split_host_port(entry: str, address: str) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' or a bare IPv6 literal as (host, port); the
    port defaults to 7373. ValueError naming the address otherwise."""
    bad = f"invalid frontend address {entry!r} in {address!r}"
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise ValueError(f"{bad}: missing ']'")
        host, rest = entry[1:end], entry[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{bad}: expected [ipv6]:port")
        port_text = rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{bad}: {host!r} is not an IPv6 address") from None
    elif entry.count(":") > 1:
        try:
            ipaddress.IPv6Address(entry)
        except ValueError:
            raise ValueError(f"{bad}: write an IPv6 address with a port as [addr]:port") from None
        host, port_text = entry, ""
    else:
        host, _, port_text = entry.partition(":")
        if ":" in entry and not port_text:
            raise ValueError(f"{bad}: the port is missing")
    if not host:
        raise ValueError(f"{bad}: the host is missing")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{bad}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_address_list(address: str) -> list[tuple[str, int]] | None:
    """The (host, port) entries of a comma-separated list of frontends, or None when
    address is a single host:port or a gRPC target (dns:///cairn.internal:7373,
    ipv4:10.0.0.1:7373,10.0.0.2:7373, ...), which goes to gRPC unchanged.
    ValueError for a malformed list."""
    text = address.strip()
    if not text:
        raise ValueError("the frontend address is empty")
    if "," not in text or _SCHEME.match(text):
        return None  # gRPC's own target syntax, e.g. ipv4:10.0.0.1:7373,10.0.0.2:7373
    if "://" in text:
        raise ValueError(f"frontend address {address!r}: a list of frontends is written "
                         "host:port,host:port without a scheme")
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ValueError(f"frontend address {address!r} names no frontend")
    parsed = [_split_host_port(e, address) for e in entries]
    if {_literal_family(h) for h, _ in parsed} >= {socket.AF_INET, socket.AF_INET6}:
        raise ValueError(f"frontend address {address!r}: a list of frontends cannot mix IPv4 "
                         "and IPv6 addresses")
    return parsed


def check_address(address: str) -> str:
    """Checks an address's syntax (nothing is resolved); returns it."""
    parse_address_list(address)
    return address


def _literal_family(host: str) -> int | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _resolve(host: str, port: int) -> dict[int, list[str]]:
    """A host name's addresses by family (AF_INET, AF_INET6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnavailableError(f"cannot resolve frontend host {host!r}: {exc}",
                               grpc.StatusCode.UNAVAILABLE) from None
    found: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for family, _, _, _, sockaddr in infos:
        host_ip = str(sockaddr[0]).split("%")[0]
        if family in found and host_ip not in found[family]:
            found[family].append(host_ip)
    return found


def list_target(entries: list[tuple[str, int]]) -> str:
    """One gRPC target for several frontends: "ipv4:a:p,b:p" or "ipv6:[a]:p,[b]:p".
    Host names are resolved now (socket.getaddrinfo) into every address of the
    chosen family; IPv4 is chosen unless the list names IPv6 literals or a host
    has no IPv4 address. UnavailableError when a host cannot be resolved,
    ValueError when the addresses cannot share one family."""
    literal = {_literal_family(h) for h, _ in entries} - {None}
    resolved = {h: _resolve(h, p) for h, p in entries if _literal_family(h) is None}
    family = None
    for candidate in (socket.AF_INET, socket.AF_INET6):
        if literal - {candidate}:
            continue
        if all(addrs[candidate] for addrs in resolved.values()):
            family = candidate
            break
    if family is None:
        names = ", ".join(resolved)
        raise ValueError(f"the frontends {names} do not all have an address of the same "
                         "family (IPv4 or IPv6)")
    out: list[str] = []
    for host, port in entries:
        hosts = resolved[host][family] if host in resolved else [
            str(ipaddress.ip_address(host))]
        for h in hosts:
            item = f"[{h}]:{port}" if family == socket.AF_INET6 else f"{h}:{port}"
            if item not in out:
                out.append(item)
    return ("ipv6:" if family == socket.AF_INET6 else "ipv4:") + ",".join(out)


def channel_target(address: str) -> str:
    """The gRPC target for an address: a list of frontends becomes one ipv4:/ipv6:
    target (host names resolved now); anything else is used as given."""
    entries = parse_address_list(address)
    return address.strip() if entries is None else list_target(entries)


def channel_options() -> list[tuple[str, Any]]:
    """Message size limits, round-robin over the target's addresses, and retries of
    UNAVAILABLE on idempotent methods (service_config)."""
    return [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin"),
            ("grpc.enable_retries", 1), ("grpc.service_config", service_config())]


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to the frontend(s); call inside the event loop
    that uses it. address is host:port, a gRPC target (dns:///cairn.internal:7373,
    which round-robins over the name's addresses), or a comma-separated list of
    frontends ("10.0.0.1:7373,10.0.0.2:7373"; host names in a list are resolved
    once, here). Calls are spread round-robin over the addresses, and idempotent
    methods that fail with UNAVAILABLE are retried (up to 5 attempts) on another."""
    return grpc.aio.insecure_channel(channel_target(address), options=channel_options())


def code_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a gRPC error, or None for anything else."""
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code()
    return None


def details_of(exc: grpc.RpcError) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return details or str(exc)


def to_cairn_error(exc: grpc.RpcError) -> CairnError:
    """The CairnError subclass for the error's status code, with the server's message."""
    code = code_of(exc)
    cls = _ERRORS.get(code, CairnError) if code is not None else CairnError
    details = details_of(exc)
    if cls is QueueFullError and _MESSAGE_TOO_LARGE.search(details):
        cls = CairnError
    return cls(details, code)


async def call_mapped(method: Callable[..., Awaitable[R]], request: Any, timeout: float) -> R:
    """Calls a unary method; a gRPC error becomes the matching CairnError."""
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise to_cairn_error(exc) from None


async def call_with_retry(method: Callable[..., Awaitable[R]], request: Any, *,
                          timeout: float, give_up_after: float,
                          first_delay: float = 0.05, max_delay: float = 2.0) -> R:
    """Calls a unary method, retrying UNAVAILABLE and DEADLINE_EXCEEDED with a
    doubling delay for up to give_up_after seconds; then, or on any other error,
    raises the last grpc.RpcError."""
    deadline = time.monotonic() + give_up_after
    delay = first_delay
    while True:
        try:
            return await method(request, timeout=timeout)
        except grpc.RpcError as exc:
            if code_of(exc) not in TRANSIENT_CODES or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(max_delay, delay * 2)
