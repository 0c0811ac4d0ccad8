"""The frontend's public services on a gRPC server, built from the routing
table: each method is forwarded to its backend or served by its explicit
handler (a server-streaming method, e.g. WatchRun, always by a handler, an
async generator); a method of the public protocol without a route fails at
start. Every method notes its caller's deadline for the calls it makes to the
backends (backend.DEADLINE)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from services.frontend.backend import DEADLINE, Backend
from services.frontend.handlers import Handler
from services.frontend.routes import SERVICES, Route, path
from services.frontend.validation import Undecodable

Context = grpc.aio.ServicerContext[Any, Any]


def _forward(backend: Backend, route: Route) -> Handler:
    """Sends the request unchanged to the route's backend method of the same name."""
    target, method = route.backend, route.method
    assert target is not None

    async def forwarded(request: Any, context: Context) -> Any:
        return await backend.call(target, method, request)

    return forwarded


def _note_deadline(context: Context) -> None:
    remaining = context.time_remaining()
    DEADLINE.set(None if remaining is None else time.monotonic() + remaining)


def _with_deadline(behaviour: Handler, streaming: bool) -> Handler:
    """The behaviour, with the caller's deadline noted first (backend.DEADLINE)."""
    if streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            _note_deadline(context)
            async for response in behaviour(request, context):  # type: ignore[union-attr]
                yield response

        return stream

    async def unary(request: Any, context: Context) -> Any:
        _note_deadline(context)
        return await behaviour(request, context)  # type: ignore[misc]

    return unary


def _decoder(message_class: Any) -> Any:
    """The request deserializer of a method: a message, or Undecodable (refused
    by the interceptors as INVALID_ARGUMENT) when the bytes cannot be read."""

    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_class.DESCRIPTOR.full_name, str(exc))

    return decode


def _encoder(message_class: Any) -> Any:
    """The response serializer of a method: a stream's handler may yield a
    message already encoded (a run feed encodes one for all its watchers)."""
    serialize = message_class.SerializeToString

    def encode(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return encode


def add_services(
    server: grpc.aio.Server, routes: dict[str, Route], handlers: dict[str, Handler], backend: Backend
) -> None:
    """Registers every method of the public services on the server."""
    for service in SERVICES:
        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for m in service.methods:
            route = routes.get(path(service, m.name))
            if route is None:
                raise RuntimeError(f"{path(service, m.name)} has no route")
            if m.client_streaming:
                raise RuntimeError(f"{route.path}: client streaming is not served")
            if m.server_streaming and route.backend:
                raise RuntimeError(f"{route.path}: a stream is served by a handler, not forwarded")
            behaviour = _forward(backend, route) if route.backend else handlers.get(route.path)
            if behaviour is None:
                raise RuntimeError(f"{route.path} has neither a backend nor a handler")
            make = (
                grpc.unary_stream_rpc_method_handler
                if m.server_streaming
                else grpc.unary_unary_rpc_method_handler
            )
            methods[m.name] = make(
                _with_deadline(behaviour, m.server_streaming),
                request_deserializer=_decoder(GetMessageClass(m.input_type)),
                response_serializer=_encoder(GetMessageClass(m.output_type)),
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, methods),))
        server.add_registered_method_handlers(service.full_name, methods)
