"""The gRPC plumbing Worker and Client share: where to connect, the channel,
retrying transient failures and turning status codes into CairnError types."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from cairn import addresses, credentials, limits, resend
from cairn.credentials import ApiKey, ClientTLS, PemSource
from cairn.v1 import (
    queue_service_pb2,
    run_service_pb2,
    schedule_service_pb2,
    wait_service_pb2,
    worker_service_pb2,
)
from worker_sdk.errors import (
    AlreadyExistsError,
    CairnError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
)

DEFAULT_ADDRESS = "127.0.0.1:7373"
DEFAULT_NAMESPACE = limits.DEFAULT_NAMESPACE
DEFAULT_RPC_TIMEOUT = 30.0  # a client call's bound, the waits excepted
# Journals and payloads can be large; the server enforces its own size limits.
# Bound of one write from an attempt (step record, finish, metadata, trigger).
WRITE_TIMEOUT = 10.0
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# A call that met these met a frontend going away: nothing answered, its
# connection dropped (UNAVAILABLE), or a frontend shutting down cut it off
# (CANCELLED; a cancellation of the caller's own is asyncio's CancelledError).
GONE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
# The trailing metadata entry of a FAILED_PRECONDITION that refuses a write or
# heartbeat of an attempt that is no longer current: why ("canceled",
# "timed_out", "superseded", "ended"; cairn.v1.AttemptGone).
ATTEMPT_GONE_KEY = "cairn-attempt-gone"

_ERRORS: dict[grpc.StatusCode, type[CairnError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: QueueFullError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}
# gRPC itself answers RESOURCE_EXHAUSTED for an oversized message; that is not a full queue.
_MESSAGE_TOO_LARGE = re.compile(r"message larger than max", re.IGNORECASE)
# Requests that do the same when sent twice: reads, polls, heartbeats, settings that
# set a state. Refused by a limit of the API key, they are sent again after the delay
# the refusal names (call_mapped); so are triggers whose every run carries an
# idempotency key (idempotent()), and an attempt's writes, fenced on the attempt
# and its positions (call_with_retry).
_IDEMPOTENT: frozenset[type[Any]] = frozenset(
    {
        run_service_pb2.GetRunRequest,
        run_service_pb2.ListRunsRequest,
        run_service_pb2.WaitRunRequest,
        run_service_pb2.ListRunLogsRequest,
        run_service_pb2.WatchRunRequest,
        run_service_pb2.WatchRunsRequest,
        wait_service_pb2.GetWaitTokenRequest,
        schedule_service_pb2.ListSchedulesRequest,
        schedule_service_pb2.PauseScheduleRequest,
        schedule_service_pb2.ResumeScheduleRequest,
        queue_service_pb2.ListQueuesRequest,
        queue_service_pb2.ListWorkersRequest,
        queue_service_pb2.PauseQueueRequest,
        queue_service_pb2.ResumeQueueRequest,
        queue_service_pb2.UpdateQueueRequest,
        worker_service_pb2.RegisterWorkerRequest,
        worker_service_pb2.PollAttemptRequest,
        worker_service_pb2.HeartbeatRequest,
    }
)

R = TypeVar("R")
S = TypeVar("S")


def resolve_address(address: str | None) -> str:
    """The argument, else $CAIRN_ADDRESS, else 127.0.0.1:7373."""
    return address or os.environ.get("CAIRN_ADDRESS") or DEFAULT_ADDRESS


def resolve_namespace(namespace: str | None) -> str:
    """The argument, else $CAIRN_NAMESPACE, else "default"."""
    return namespace or os.environ.get("CAIRN_NAMESPACE") or DEFAULT_NAMESPACE


def resolve_api_key(api_key: str | None) -> ApiKey | None:
    """The key to send (cairn.credentials.resolve_api_key): the argument, else
    $CAIRN_API_KEY, else `cairn dev`'s admin.key ($CAIRN_DEV_DIR, else ./.cairn);
    None when there is none. A malformed one is InvalidArgumentError naming
    where it came from."""
    try:
        return credentials.resolve_api_key(api_key, "api_key=")
    except ValueError as exc:
        raise InvalidArgumentError(str(exc), None) from None


@dataclass(frozen=True)
class TLSConfig:
    """TLS to the frontend: ca, the CA certificate(s) to trust (a PEM file's path,
    or its contents as bytes; None: the system's roots); cert and key, this
    client's certificate chain and private key for mutual TLS (both or
    neither); server_name, the name the server's certificate must carry when
    it is not the address's host (e.g. when connecting by IP address list).
    Given to a client or worker it is used as is; without one, CAIRN_TLS_CA,
    CAIRN_TLS_CERT, CAIRN_TLS_KEY (and CAIRN_TLS_SERVER_NAME) ask for TLS."""

    ca: PemSource | None = None
    cert: PemSource | None = None
    key: PemSource | None = None
    server_name: str | None = None


_TLS_FIELDS = {"ca": "tls.ca", "cert": "tls.cert", "key": "tls.key"}


def resolve_tls(tls: TLSConfig | None) -> ClientTLS | None:
    """The TLS of a channel: tls (read now; TLSConfig() alone is TLS with the
    system's roots), else the CAIRN_TLS_* variables, else None (plaintext).
    A file that cannot be read, or a cert without its key, is
    InvalidArgumentError naming it."""
    try:
        if tls is None:
            return credentials.client_tls(flags=_TLS_FIELDS)
        if not isinstance(tls, TLSConfig):
            raise InvalidArgumentError(f"tls must be a TLSConfig, got {type(tls).__name__}", None)
        found = credentials.client_tls(
            tls.ca, tls.cert, tls.key, tls.server_name, flags=_TLS_FIELDS, from_env=False
        )
    except ValueError as exc:
        raise InvalidArgumentError(str(exc), None) from None
    return found or ClientTLS(server_name=tls.server_name)


def frontend_address(address: str | None) -> str:
    """resolve_address(address), checked (cairn.addresses.check_address): a bad
    address is InvalidArgumentError naming it."""
    try:
        return addresses.check_address(resolve_address(address))
    except ValueError as exc:
        raise InvalidArgumentError(str(exc), None) from None


def channel_target(address: str) -> str:
    """The gRPC target for a frontend address (cairn.addresses); an unresolvable
    host name is UnavailableError, so a worker retries it."""
    try:
        return addresses.channel_target(address)
    except addresses.UnresolvedHost as exc:
        raise UnavailableError(str(exc), grpc.StatusCode.UNAVAILABLE) from None


def channel_options() -> list[tuple[str, Any]]:
    """A client channel's options: message size limits, quick reconnects,
    round-robin over the target's addresses, and retries of UNAVAILABLE on
    idempotent methods (defined once in cairn.addresses, shared with the CLI)."""
    return addresses.client_channel_options()


def open_channel(
    address: str, api_key: ApiKey | None = None, tls: ClientTLS | None = None
) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to the frontend(s); call inside the event loop
    that uses it. address is host:port, a gRPC target (dns:///cairn.internal:7373,
    which round-robins over the name's addresses), or a comma-separated list of
    frontends ("10.0.0.1:7373,10.0.0.2:7373"; host names in a list are resolved
    once, here). Calls are spread round-robin over the addresses, and idempotent
    methods that fail with UNAVAILABLE are retried (up to 5 attempts) on another.
    With api_key, every call on it (streams included) carries
    `authorization: Bearer <key>`; with tls, it is a TLS channel
    (grpc.ssl_channel_credentials: the CA, and a client certificate for mutual
    TLS)."""
    target = channel_target(address)
    if tls is None:
        channel = grpc.aio.insecure_channel(target, options=channel_options())
    else:
        creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
        options = channel_options()
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.aio.secure_channel(target, creds, options=options)
    return channel if api_key is None else MetadataChannel(channel, api_key.metadata)


class _WithMetadata:
    """A multi-callable whose calls carry metadata first, then the caller's own."""

    __slots__ = ("_call", "_metadata")

    def __init__(self, call: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = call
        self._metadata = metadata

    def __call__(
        self, request: Any, *, metadata: Sequence[tuple[str, str | bytes]] | None = None, **kw: Any
    ) -> Any:
        return self._call(
            request, metadata=self._metadata if metadata is None else (*self._metadata, *metadata), **kw
        )


class MetadataChannel(grpc.aio.Channel):
    """A grpc.aio channel whose every call carries metadata (the API key): the
    stubs made on it send it on unary calls and streams alike. Cheaper than a
    client interceptor, which wraps each call in a task of its own; the calls
    returned are the channel's own, errors and trailing metadata unchanged."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._channel = channel
        self._metadata = metadata

    async def __aenter__(self) -> MetadataChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kw: Any) -> Any:
        return _WithMetadata(self._channel.unary_unary(method, *args, **kw), self._metadata)

    def unary_stream(self, method: str, *args: Any, **kw: Any) -> Any:
        return _WithMetadata(self._channel.unary_stream(method, *args, **kw), self._metadata)

    def stream_unary(self, method: str, *args: Any, **kw: Any) -> Any:
        return _WithMetadata(self._channel.stream_unary(method, *args, **kw), self._metadata)

    def stream_stream(self, method: str, *args: Any, **kw: Any) -> Any:
        return _WithMetadata(self._channel.stream_stream(method, *args, **kw), self._metadata)


def make_stub(cls: Callable[[grpc.aio.Channel], S], channel: grpc.aio.Channel) -> S:
    """A generated (untyped) service stub on channel."""
    return cls(channel)


def code_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a gRPC error, or None for anything else."""
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code()
    return None


def details_of(exc: grpc.RpcError) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return details or str(exc)


def attempt_gone_of(exc: BaseException) -> str | None:
    """The "cairn-attempt-gone" value a refusal carries in its trailing metadata
    (why the attempt is no longer current), or None when it carries none."""
    trailing = getattr(exc, "trailing_metadata", None)
    if not isinstance(exc, grpc.RpcError) or not callable(trailing):
        return None
    for key, value in trailing() or ():
        if key == ATTEMPT_GONE_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def retry_delay_of(exc: BaseException) -> float | None:
    """The seconds a refusal by a limit of the caller's API key asks to wait
    (RESOURCE_EXHAUSTED with the trailing metadata limits.RETRY_AFTER_KEY, in
    milliseconds); None for any other error (a full queue's carries none)."""
    trailing = getattr(exc, "trailing_metadata", None)
    if code_of(exc) != grpc.StatusCode.RESOURCE_EXHAUSTED or not callable(trailing):
        return None
    for key, value in trailing() or ():
        if key == limits.RETRY_AFTER_KEY:
            try:
                ms = int(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return None
            return max(0, ms) / 1000
    return None


def jittered(delay: float) -> float:
    """A retry delay plus up to a fifth, so the refused calls of one key do not
    all come back at the same instant."""
    return delay * (1.0 + 0.2 * random.random())


def idempotent(request: Any) -> bool:
    """Whether sending request again does nothing more than sending it once
    (_IDEMPOTENT; a trigger when every run it makes carries an idempotency key)."""
    if isinstance(request, run_service_pb2.TriggerRunRequest):
        return bool(request.idempotency_key)
    if isinstance(request, run_service_pb2.BatchTriggerRunsRequest):
        return all(r.idempotency_key for r in request.runs)
    if isinstance(request, wait_service_pb2.CreateWaitTokenRequest):
        return bool(request.idempotency_key)
    return type(request) in _IDEMPOTENT


def unavailable_error(
    exc: grpc.RpcError, frontend: str | None, tried: float | None = None
) -> UnavailableError:
    """UnavailableError for an UNAVAILABLE that no further sending cured. It
    names what was down: the frontend's own message names history or matching
    when the frontend answered that one of them is down; otherwise no frontend
    answered, and the message says so, naming frontend (the client's address).
    tried: the seconds the call was sent again for, when it was."""
    details = details_of(exc)
    if frontend and not resend.names_a_service(details):
        details = f"cannot reach the Cairn frontend at {frontend}: {details}"
    if tried:
        details += f" (sent again for {tried:.1f} s)"
    return UnavailableError(details, grpc.StatusCode.UNAVAILABLE)


def to_cairn_error(exc: grpc.RpcError) -> CairnError:
    """The CairnError subclass for the error's status code, with the server's
    message: RESOURCE_EXHAUSTED is RateLimitedError when it names a retry delay
    (a limit of the API key), else QueueFullError."""
    code = code_of(exc)
    cls = _ERRORS.get(code, CairnError) if code is not None else CairnError
    details = details_of(exc)
    if cls is QueueFullError:
        delay = retry_delay_of(exc)
        if delay is not None:
            return RateLimitedError(details, code, delay)
        if _MESSAGE_TOO_LARGE.search(details):
            cls = CairnError
    return cls(details, code)


async def call_mapped(
    method: Callable[..., Awaitable[R]],
    request: Any,
    timeout: float,
    *,
    frontend: str | None = None,
    repeated: Callable[[grpc.RpcError], Awaitable[R | None]] | None = None,
) -> R:
    """Calls a unary method; a gRPC error becomes the matching CairnError.

    A request that is safe to send again (cairn.resend.resendable: reads,
    cancels, settings, triggers carrying a request id or an idempotency key,
    ...) is sent again after UNAVAILABLE (a frontend restarting or refusing
    calls as it shuts down, nothing listening, or a frontend saying history or
    matching is down) with a growing, jittered pause, for up to
    resend.RESEND_SECONDS and within timeout of the first sending; on a list of
    frontends the channel sends it to another one that answers. Then, or for
    another request, UNAVAILABLE is UnavailableError naming what was down
    (unavailable_error; frontend is the client's address). An idempotent
    request refused by a limit of the API key is sent again after the delay
    the refusal names, within timeout (then RateLimitedError).

    repeated: for a request whose sending again is refused once the first had
    landed (a cancel, a token's completion, a schedule's deletion): called with
    a refusal met by a sending after one that met UNAVAILABLE; an answer it
    returns stands for the call's."""
    started = time.monotonic()
    deadline = started + timeout
    resend_until = started + min(timeout, resend.RESEND_SECONDS)
    limited_again = idempotent(request)
    again = resend.resendable(request)
    delay = resend.FIRST_DELAY
    unavailable: grpc.RpcError | None = None  # the last UNAVAILABLE, when a sending met one
    left = timeout
    while True:
        try:
            return await method(request, timeout=left)
        except grpc.RpcError as exc:
            code, now = code_of(exc), time.monotonic()
            limited = retry_delay_of(exc) if limited_again else None
            if limited is not None:
                wait = jittered(limited)
                if now + wait >= deadline:
                    raise to_cairn_error(exc) from None
            elif code in GONE_CODES and again:
                wait, delay = resend.jittered(delay), resend.next_delay(delay)
                if now + wait >= resend_until:
                    raise unavailable_error(exc, frontend, now - started) from None
                unavailable = exc
            else:
                if unavailable is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    # the last sending ran out of the time left: what stopped the call was UNAVAILABLE
                    raise unavailable_error(unavailable, frontend, now - started) from None
                if unavailable is not None and repeated is not None:
                    answer = await repeated(exc)
                    if answer is not None:
                        return answer
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise unavailable_error(exc, frontend) from None
                raise to_cairn_error(exc) from None
        await asyncio.sleep(wait)
        left = deadline - time.monotonic()


async def call_with_retry(
    method: Callable[..., Awaitable[R]],
    request: Any,
    *,
    timeout: float,
    give_up_after: float,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
) -> R:
    """Calls a unary method, retrying UNAVAILABLE and DEADLINE_EXCEEDED with a
    doubling delay, and a refusal by a limit of the API key after the delay it
    names, for up to give_up_after seconds; then, or on any other error, raises
    the last grpc.RpcError. For an attempt's writes, which are fenced on the
    attempt (and a step on its position), so sending one again is harmless."""
    deadline = time.monotonic() + give_up_after
    delay = first_delay
    while True:
        try:
            return await method(request, timeout=timeout)
        except grpc.RpcError as exc:
            limited = retry_delay_of(exc)
            if limited is not None:
                wait = jittered(limited)
            elif code_of(exc) in TRANSIENT_CODES:
                wait, delay = delay, min(max_delay, delay * 2)
            else:
                raise
            if time.monotonic() + wait > deadline:
                raise
        await asyncio.sleep(wait)
