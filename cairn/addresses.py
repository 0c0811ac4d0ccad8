"""Addresses of Cairn services, shared by the SDK (frontends) and the services
(each other): host:port, a gRPC target (dns:///history:7375, ipv4:...), or a
comma-separated list host:port,host:port that becomes one round-robin target."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from typing import Any

DEFAULT_PORT = 7373
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"  # a client's frontend when it names none
# Each channel its own connections, reconnecting within 2 s: with gRPC's
# process-wide pool and default backoff (up to 120 s) a new client reused a
# connection still backing off from a restarted server and failed at once.
RECONNECT_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# A target that names its gRPC resolver, e.g. dns:///cairn.internal:7373 or ipv4:1.2.3.4:7373.
_SCHEME = re.compile(r"^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds|google-c2p|passthrough):", re.IGNORECASE)


class UnresolvedHost(OSError):
    """A host name in an address list has no address (yet)."""


def _split_host_port(entry: str, address: str, what: str, default_port: int) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' or a bare IPv6 literal as (host, port); the
    port defaults to default_port. ValueError naming the address otherwise."""
    bad = f"invalid {what} address {entry!r}" + (f" in {address!r}" if entry != address else "")
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise ValueError(f"{bad}: missing ']'")
        host, rest = entry[1:end], entry[end + 1 :]
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
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{bad}: the port must be a number from 1 to 65535, not {port_text!r}")
    return host, int(port_text)


def parse_address_list(
    address: str, what: str = "frontend", default_port: int = DEFAULT_PORT
) -> list[tuple[str, int]] | None:
    """The (host, port) entries of a comma-separated list of addresses, or None when
    address is a single host:port or a gRPC target (dns:///cairn.internal:7373,
    ipv4:10.0.0.1:7373,10.0.0.2:7373, ...), which goes to gRPC unchanged.
    ValueError for a malformed list."""
    text = address.strip()
    if not text:
        raise ValueError(f"the {what} address is empty")
    if _SCHEME.match(text):
        return None  # gRPC's own target syntax, e.g. ipv4:10.0.0.1:7373,10.0.0.2:7373
    if "," not in text:
        _check_single(text, what)
        return None
    if "://" in text:
        raise ValueError(
            f"{what} address {address!r}: a list of {what}s is written host:port,host:port without a scheme"
        )
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ValueError(f"{what} address {address!r} names no {what}")
    parsed = [_split_host_port(e, address, what, default_port) for e in entries]
    if {_literal_family(h) for h, _ in parsed} >= {socket.AF_INET, socket.AF_INET6}:
        raise ValueError(f"{what} address {address!r}: a list of {what}s cannot mix IPv4 and IPv6 addresses")
    return parsed


def _check_single(text: str, what: str) -> None:
    """A single host:port: a URL scheme, a missing or bad port and a missing host
    are each refused with their own message (gRPC would read "http://h:p" as a
    host name, and a missing port as 443)."""
    scheme, sep, rest = text.partition("://")
    if sep:
        example = rest.rstrip("/") or f"127.0.0.1:{DEFAULT_PORT}"
        raise ValueError(
            f"{what} address {text!r} is a URL: Cairn speaks gRPC, not {scheme.upper()}; "
            f"write host:port without {scheme}://, e.g. {example}"
        )
    host, port = _split_host_port(text, text, what, 0)
    if port == 0:
        shown = f"[{host}]" if ":" in host else host
        raise ValueError(f"{what} address {text!r} has no port: write host:port, e.g. {shown}:{DEFAULT_PORT}")


def is_grpc_target(address: str) -> bool:
    """Whether address is written in gRPC's own target syntax (dns:///host:port,
    ipv4:..., unix:...), which goes to gRPC as it is and which
    unreachable_reason does not look into."""
    return bool(_SCHEME.match(address.strip()))


def unreachable_reason(address: str, what: str = "frontend", timeout: float = 1.0) -> str:
    """Why nothing answered at address, found by resolving each host:port it
    names and opening a TCP connection to it: "cannot resolve host 'x' ...",
    "nothing listens on h:p (connection refused)", "h:p did not answer within
    1s". "" when every address accepted a connection, or address is a gRPC target
    (dns:///..., unix:...) that this does not look into."""
    try:
        entries = parse_address_list(address, what)
    except ValueError as exc:
        return str(exc)
    if entries is None:
        if is_grpc_target(address):
            return ""
        entries = [_split_host_port(address.strip(), address, what, DEFAULT_PORT)]
    reasons = []
    for host, port in entries:
        try:
            found = _resolve(host, port, what)
        except UnresolvedHost:
            reasons.append(f"the host {host!r} is unknown (its name does not resolve)")
            continue
        ips = found[socket.AF_INET] + found[socket.AF_INET6]
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            socket.create_connection((ips[0] if ips else host, port), timeout=timeout).close()
        except ConnectionRefusedError:
            reasons.append(f"nothing listens on {where} (connection refused)")
        except TimeoutError:
            reasons.append(f"{where} did not answer within {timeout:g}s")
        except OSError as exc:
            reasons.append(f"cannot connect to {where}: {exc.strerror or exc}")
    return "; ".join(reasons)


def check_address(address: str, what: str = "frontend") -> str:
    """Checks an address's syntax (nothing is resolved); returns it. ValueError
    naming the problem: a URL scheme, a missing or bad port, a missing host."""
    parse_address_list(address, what)
    return address


def _literal_family(host: str) -> int | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _resolve(host: str, port: int, what: str) -> dict[int, list[str]]:
    """A host name's addresses by family (AF_INET, AF_INET6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvedHost(f"cannot resolve {what} host {host!r}: {exc}") from None
    found: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for family, _, _, _, sockaddr in infos:
        host_ip = str(sockaddr[0]).split("%")[0]
        if family in found and host_ip not in found[family]:
            found[family].append(host_ip)
    return found


def list_target(entries: list[tuple[str, int]], what: str = "frontend") -> str:
    """One gRPC target for several addresses: "ipv4:a:p,b:p" or "ipv6:[a]:p,[b]:p".
    Host names are resolved now (socket.getaddrinfo) into every address of the
    chosen family; IPv4 is chosen unless the list names IPv6 literals or a host
    has no IPv4 address. UnresolvedHost when a host cannot be resolved,
    ValueError when the addresses cannot share one family."""
    literal = {_literal_family(h) for h, _ in entries} - {None}
    resolved = {h: _resolve(h, p, what) for h, p in entries if _literal_family(h) is None}
    family = None
    for candidate in (socket.AF_INET, socket.AF_INET6):
        if literal - {candidate}:
            continue
        if all(addrs[candidate] for addrs in resolved.values()):
            family = candidate
            break
    if family is None:
        names = ", ".join(resolved)
        raise ValueError(f"the {what}s {names} do not all have an address of the same family (IPv4 or IPv6)")
    out: list[str] = []
    for host, port in entries:
        hosts = resolved[host][family] if host in resolved else [str(ipaddress.ip_address(host))]
        for h in hosts:
            item = f"[{h}]:{port}" if family == socket.AF_INET6 else f"{h}:{port}"
            if item not in out:
                out.append(item)
    return ("ipv6:" if family == socket.AF_INET6 else "ipv4:") + ",".join(out)


def channel_target(address: str, what: str = "frontend") -> str:
    """The gRPC target for an address: a list of addresses becomes one ipv4:/ipv6:
    target (host names resolved now); anything else is used as given."""
    entries = parse_address_list(address, what)
    return address.strip() if entries is None else list_target(entries, what)


# Frontend methods the channel itself sends again after UNAVAILABLE: reads, long polls,
# and writes whose repetition changes nothing (cancel, queue settings, heartbeats,
# a poll that never reached matching, registration). TriggerRun is idempotent only
# with a request id or an idempotency key, so the channel never sends it again; the
# SDK and the CLI do, by the rule of cairn/resend.py.
RETRYABLE_METHODS: dict[str, tuple[str, ...]] = {
    "cairn.v1.RunService": ("GetRun", "ListRuns", "WaitRun", "CancelRun"),
    "cairn.v1.WaitService": ("GetWaitToken",),
    "cairn.v1.QueueService": ("ListQueues", "UpdateQueue", "PauseQueue", "ResumeQueue"),
    "cairn.v1.ScheduleService": ("ListSchedules",),
    "cairn.v1.WorkerService": ("Heartbeat", "PollAttempt", "RegisterWorker"),
}
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# Journals and payloads can be large; the server enforces its own size limits.
CLIENT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def client_service_config() -> str:
    """A frontend channel's gRPC service config (JSON): UNAVAILABLE retried on
    the RETRYABLE_METHODS."""
    names = [
        {"service": service, "method": method}
        for service, methods in RETRYABLE_METHODS.items()
        for method in methods
    ]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": RETRY_POLICY}]})


def client_channel_options() -> list[tuple[str, Any]]:
    """The options of a client's channel to the frontend(s): message size limits,
    quick reconnects, round-robin over the target's addresses, and retries of
    UNAVAILABLE on idempotent methods (client_service_config)."""
    return [
        ("grpc.max_receive_message_length", CLIENT_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", CLIENT_MAX_MESSAGE_BYTES),
        *RECONNECT_OPTIONS,
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", client_service_config()),
    ]
