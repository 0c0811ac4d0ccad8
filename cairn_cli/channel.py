"""The CLI's channel to the frontend(s), how it makes a call, and what its
calls raise: the channel (plaintext or TLS, every call carrying the API key),
first_contact() (has a frontend answered at all?), call() (sent again after
UNAVAILABLE when that is safe, cairn.resend), FrontendError for a refusal,
Unreachable when no frontend answered, and BackendDown when one answered that
history or matching is down.

Two waits, for two different situations: a command that has not reached a
frontend yet waits FIRST_CONTACT_SECONDS for one (nothing listening, an
unknown host or a server that does not speak gRPC is a mistake to report at
once, not a restart to wait out), and a command that has reached one sends its
calls again for up to cairn.resend.RESEND_SECONDS, so that a frontend
restarting under it goes unnoticed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import grpc

from cairn import addresses, resend
from cairn.credentials import ApiKey, ClientTLS

R = TypeVar("R")

# How long a command waits for its first connection to a frontend: a frontend
# coming up (`cairn dev` just started) or a remote one connects within it; a
# mistaken address is reported after it instead of after resend.RESEND_SECONDS.
FIRST_CONTACT_SECONDS = 2.0
# The call first_contact() sends to read gRPC's own reason: the channel fails it
# at once when its connections failed; a server that answers it is reached.
_PROBE = "/grpc.health.v1.Health/Check"
_PROBE_SECONDS = 0.5


class FrontendError(Exception):
    """The frontend refused a call; the message is its explanation."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(FrontendError):
    """No frontend answered: none connected within FIRST_CONTACT_SECONDS of a
    command's first call, a call met UNAVAILABLE for as long as it was sent
    again, or a host name of a list does not resolve."""


class BackendDown(Unreachable):
    """A frontend answered UNAVAILABLE naming the service behind it that is down
    (history or matching): the message says which, and the frontend is up."""


# A call that met these met a frontend going away: nothing answered, its
# connection dropped (UNAVAILABLE), or a frontend shutting down cut it off (CANCELLED).
GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def error(exc: grpc.RpcError, tried: float | None = None) -> FrontendError:
    """The FrontendError of a failed call: Unreachable for UNAVAILABLE (or a
    CANCELLED of a frontend shutting down), BackendDown when its message is a
    frontend's naming history or matching. tried: the seconds the call was
    sent again for, said in the message."""
    code: grpc.StatusCode | None = exc.code() if callable(getattr(exc, "code", None)) else None
    details = (exc.details() if callable(getattr(exc, "details", None)) else None) or str(exc)
    if code not in GONE:
        return FrontendError(details, code)
    if tried:
        details += f" (sent again for {tried:.1f} s)"
    return (BackendDown if resend.names_a_service(details) else Unreachable)(details, code)


def first_contact(channel: grpc.Channel, within: float = FIRST_CONTACT_SECONDS) -> str | None:
    """None when channel connects to a server within `within` seconds (it
    turns READY: grpc.channel_ready_future, which also starts connecting);
    else why not, in gRPC's words ("connections to all backends failing; last
    error: ... Connection refused", "errors resolving HOST: ...", "Failed
    parsing HTTP/2 ..."): the error of one call sent then, which a channel
    whose connections failed fails at once. A server that answers that call
    (it connected just then) counts as reached."""
    ready = grpc.channel_ready_future(channel)
    try:
        ready.result(timeout=within)
        return None
    except grpc.FutureTimeoutError:
        pass
    finally:
        ready.cancel()
    probe: Any = channel.unary_unary(_PROBE)  # bytes in and out: no (de)serializers
    try:
        probe(b"", timeout=_PROBE_SECONDS)
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no connection within {within:g} s"
        if code in GONE:
            details = exc.details() if callable(getattr(exc, "details", None)) else None
            return details or f"no connection within {within:g} s"
    return None


def call(
    method: Callable[..., R],
    request: Any,
    timeout: float,
    repeated: Callable[[grpc.RpcError], R | None] | None = None,
) -> R:
    """method(request) within timeout. A request that is safe to send again
    (cairn.resend.resendable) is sent again after UNAVAILABLE, with a growing,
    jittered pause, for up to resend.RESEND_SECONDS and within timeout: a
    restarting frontend, another frontend of a list, or a frontend whose
    history or matching restarts answers it then. A refusal is FrontendError
    (error()). repeated: for a request whose sending again is refused once the
    first had landed (a cancel, a token's completion): called with a refusal
    met after a sending that met UNAVAILABLE; an answer it returns stands."""
    started = time.monotonic()
    deadline = started + timeout
    resend_until = started + min(timeout, resend.RESEND_SECONDS)
    again = resend.resendable(request)
    delay = resend.FIRST_DELAY
    unavailable: grpc.RpcError | None = None
    left = timeout
    while True:
        try:
            return method(request, timeout=left)
        except grpc.RpcError as exc:
            code, now = exc.code(), time.monotonic()
            if code in GONE and again:
                wait, delay = resend.jittered(delay), resend.next_delay(delay)
                if now + wait >= resend_until:
                    raise error(exc, now - started) from None
                unavailable = exc
            elif unavailable is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise error(unavailable, now - started) from None
            else:
                if unavailable is not None and repeated is not None:
                    answer = repeated(exc)
                    if answer is not None:
                        return answer
                raise error(exc) from None
        time.sleep(wait)
        left = deadline - time.monotonic()


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):
    """A call's details with other metadata (gRPC's own class is private)."""


class _WithMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds metadata (the API key) to every call of a channel, streams included."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        metadata = (*self._metadata, *(details.metadata or ()))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(address: str, api_key: ApiKey | None, tls: ClientTLS | None) -> grpc.Channel:
    """A channel to the frontend(s) at address (host:port, a comma-separated
    list, or a gRPC target) with the client options of cairn.addresses
    (round-robin, quick reconnects, the channel's retries of idempotent
    methods), over TLS when tls is given, every call carrying the API key.
    Unreachable when a host name of a list does not resolve."""
    try:
        target = addresses.channel_target(address)
    except addresses.UnresolvedHost as exc:
        raise Unreachable(str(exc), grpc.StatusCode.UNAVAILABLE) from None
    options = addresses.client_channel_options()
    if tls is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
        channel = grpc.secure_channel(target, creds, options=options)
    if api_key is not None:
        channel = grpc.intercept_channel(channel, _WithMetadata(api_key.metadata))
    return channel
