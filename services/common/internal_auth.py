"""The cluster's shared internal credential: history and matching take a call
only when it carries it (gRPC metadata cairn.keys.INTERNAL_CREDENTIAL), so they
are no side door around the frontend's checks; the frontend and matching attach
it to every call they make to another service (``credentialed``).

The credential is one secret shared by every service of a cluster
(--internal-credential, CAIRN_INTERNAL_CREDENTIAL: the environment keeps it out
of ``ps``). A service started without one refuses to start unless it was told
--insecure-no-auth. The gRPC health service answers without it, so probes and
load balancers keep working."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health

from cairn.keys import INTERNAL_CREDENTIAL
from services.common.config import Settings

MIN_LENGTH = 16
# Calls that need no credential: the health service, for probes.
_OPEN_PREFIX = f"/{health.SERVICE_NAME}/"
_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def check_credential(text: str) -> str | None:
    """Why `text` cannot be a credential, or None when it can: gRPC metadata
    takes printable ASCII, and a short secret is guessable."""
    if len(text) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if not all("!" <= c <= "~" for c in text):
        return "must be printable ASCII without spaces"
    return None


def refuse_start_without_credential(settings: Settings, service: str) -> None:
    """SystemExit with what to do when the service has no internal credential
    and was not told --insecure-no-auth, or has a malformed one."""
    if settings.internal_credential:
        problem = check_credential(settings.internal_credential)
        if problem is not None:
            raise SystemExit(
                f"cairn {service}: the internal credential (CAIRN_INTERNAL_CREDENTIAL) {problem}"
            )
        return
    if settings.insecure_no_auth:
        return
    raise SystemExit(
        f"cairn {service}: no internal credential: set CAIRN_INTERNAL_CREDENTIAL (or "
        "--internal-credential) to one secret shared by frontend, history and matching, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`; or start with "
        "--insecure-no-auth (CAIRN_INSECURE_NO_AUTH=1) to run without authentication"
    )


class InternalAuth(grpc.aio.ServerInterceptor):
    """Refuses, UNAUTHENTICATED, every call without the credential (compared in
    constant time), except the health service's. The refusal does not read the
    request, so nothing of it reaches a handler."""

    def __init__(self, credential: str, service: str) -> None:
        self._credential = credential.encode()
        self._service = service
        # One refusing handler per method, so the metrics interceptor outside
        # (which caches by handler identity) wraps each once.
        self._refusals: dict[tuple[str, bool], grpc.RpcMethodHandler[Any, Any]] = {}

    def _carries_credential(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool | None:
        """True for the right credential, False for a wrong one, None for none."""
        for key, value in metadata or ():
            if key == INTERNAL_CREDENTIAL:
                given = value if isinstance(value, bytes) else value.encode()
                return hmac.compare_digest(given, self._credential)
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        if method.startswith(_OPEN_PREFIX):
            return await continuation(handler_call_details)
        carried = self._carries_credential(handler_call_details.invocation_metadata)
        if carried:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
            return None
        return self._refusal(method, handler, missing=carried is None)

    def _refusal(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any], *, missing: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        cached = self._refusals.get((method, missing))
        if cached is not None:
            return cached
        what = "carries no internal credential" if missing else "carries a wrong internal credential"
        message = (
            f"{self._service} takes calls only from the cluster's services, and this call {what} "
            f"(metadata {INTERNAL_CREDENTIAL}); call the frontend instead"
        )

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover (an async generator, as a streaming handler must be)

        for kind, make in _KINDS:
            if getattr(handler, kind) is not None:
                behaviour = refuse_stream if kind.endswith("_stream") else refuse
                refusal: grpc.RpcMethodHandler[Any, Any] = make(behaviour)
                break
        else:  # pragma: no cover (grpc handlers have one of the four)
            raise TypeError(f"a handler of {method} of no known kind")
        self._refusals[(method, missing)] = refusal
        return refusal


def server_interceptors(settings: Settings, service: str) -> list[grpc.aio.ServerInterceptor]:
    """[InternalAuth] when the service has a credential, else nothing
    (--insecure-no-auth)."""
    return [InternalAuth(settings.internal_credential, service)] if settings.internal_credential else []


class _WithCredential:
    """A channel's multicallable that adds the credential to each call's metadata."""

    __slots__ = ("_call", "_entry")

    def __init__(self, call: Any, entry: tuple[str, str]) -> None:
        self._call = call
        self._entry = entry

    def __call__(self, request: Any, *, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(request, metadata=(*(metadata or ()), self._entry), **kwargs)

    def __getattr__(self, name: str) -> Any:  # e.g. .future on a sync channel's callable
        return getattr(self._call, name)


class _CredentialedChannel:
    """A channel whose stubs send the credential on every call: the four
    multicallable factories wrap what the channel makes; everything else
    (close, channel_ready, ...) is the channel's."""

    def __init__(self, channel: grpc.aio.Channel, credential: str) -> None:
        self._channel = channel
        self._entry = (INTERNAL_CREDENTIAL, credential)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithCredential(self._channel.unary_unary(*args, **kwargs), self._entry)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithCredential(self._channel.unary_stream(*args, **kwargs), self._entry)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _WithCredential(self._channel.stream_unary(*args, **kwargs), self._entry)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _WithCredential(self._channel.stream_stream(*args, **kwargs), self._entry)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def credentialed(channel: grpc.aio.Channel, credential: str) -> grpc.aio.Channel:
    """`channel`, sending `credential` with every call of the stubs made on it
    (a plain wrapper of the call: no client interceptor on the hot path); the
    channel itself when the credential is empty (--insecure-no-auth)."""
    if not credential:
        return channel
    return cast(grpc.aio.Channel, _CredentialedChannel(channel, credential))
