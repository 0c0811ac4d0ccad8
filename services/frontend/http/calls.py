"""How an HTTP request reaches the public API: as a gRPC call to this
frontend's own gRPC port (a loopback channel), so it passes the very same
interceptors as any gRPC client's call (error mapping, authorization,
namespace defaulting, validation) and the same handler or backend, with no
second copy of any rule. A request's `traceparent` header goes with it as
metadata, and so does its `authorization` (forwarded)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from cairn import keys, tracing
from cairn.limits import MAX_WAIT, RETRY_AFTER_KEY
from services.common import grpc_server
from services.frontend.http.errors import HttpError
from services.frontend.http.routes import HttpRoute

# Longer than any call the frontend makes on (a WaitRun waits up to MAX_WAIT).
CALL_TIMEOUT = MAX_WAIT + 30.0
Metadata = tuple[tuple[str, str], ...]
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def forwarded(headers: Mapping[str, str]) -> Metadata:
    """The gRPC metadata an HTTP request's headers give its call: its
    `authorization` (the caller's API key, checked by the frontend's
    interceptors as any gRPC caller's), and its W3C `traceparent`, so a trigger
    from an instrumented HTTP client joins that client's trace. An invalid
    traceparent is dropped, as the frontend would ignore it. An authorization
    that gRPC metadata cannot carry (not printable ASCII) is no key: 401."""
    metadata: list[tuple[str, str]] = []
    if authorization := headers.get(keys.AUTHORIZATION, ""):
        if not (authorization.isascii() and authorization.isprintable()):
            raise HttpError(
                grpc.StatusCode.UNAUTHENTICATED,
                "the Authorization header must be `Bearer <key>` in printable ASCII",
            )
        metadata.append((keys.AUTHORIZATION, authorization))
    value = headers.get(tracing.METADATA_KEY, "")
    if tracing.is_valid(value):
        metadata.append((tracing.METADATA_KEY, value))
    return tuple(metadata)


def retry_after(trailing_metadata: Any) -> float | None:
    """The retry delay a refusal names (RETRY_AFTER_KEY, milliseconds), in seconds; None without one."""
    for key, value in trailing_metadata or ():
        if key == RETRY_AFTER_KEY:
            try:
                return int(value) / 1000
            except (TypeError, ValueError):
                return None
    return None


def refused(code: grpc.StatusCode, details: str | None, trailing_metadata: Any) -> HttpError:
    """The HttpError of a gRPC refusal, with its retry delay if it names one."""
    return HttpError(code, details or code.name, retry_after(trailing_metadata))


def loopback(listen: str) -> str:
    """The address to reach a gRPC server listening on `listen` from this host."""
    host, _, port = listen.rpartition(":")
    return f"{_WILDCARDS.get(host, host)}:{port}"


class GrpcCaller:
    """Calls the routed methods of the frontend's own gRPC server."""

    def __init__(self, listen: str) -> None:
        self.channel = grpc_server.channel(loopback(listen))

    async def call(self, route: HttpRoute, request: Message, metadata: Metadata = ()) -> Message:
        """The method's answer, or an HttpError with the gRPC status it refused with."""
        response_class = route.response_class()
        method = self.channel.unary_unary(
            route.grpc.path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            response: Message = await method(request, timeout=CALL_TIMEOUT, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise refused(exc.code(), exc.details(), exc.trailing_metadata()) from None
        return response

    async def open_stream(
        self, route: HttpRoute, request: Message, metadata: Metadata = ()
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """A server-streaming call once it has started: its response headers came
        (the method sends them when its request is known good), so a refusal is
        an HttpError here, before anything is streamed. Iterate it for the
        responses; cancel it when done."""
        response_class = route.response_class()
        method = self.channel.unary_stream(
            route.grpc.path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        call = method(request, metadata=metadata)
        try:
            await call.initial_metadata()
            if call.done():
                code = await call.code()
                if code != grpc.StatusCode.OK:
                    raise refused(code, await call.details(), await call.trailing_metadata())
        except BaseException:
            call.cancel()
            raise
        return call

    async def close(self) -> None:
        await self.channel.close()
