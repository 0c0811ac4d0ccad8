"""The layers every routed call passes, as gRPC server interceptors, outermost
first (see chain()): error mapping, authorization, limits per key, decoding,
namespace defaulting, validation. Each wraps the behaviour of a routed method once, unary or server
streaming alike (a stream is checked before its first message, and a failure
while it streams ends it with the mapped status), and caches the wrapped
handler per method; calls that are not routed (health, reflection) pass
untouched."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import grpc

from cairn import tracing
from cairn.limits import DEFAULT_NAMESPACE
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import status_of
from services.frontend import auth, caller_limits
from services.frontend import validation as check
from services.frontend.auth import Authenticator
from services.frontend.caller import CALLER, Caller
from services.frontend.caller_limits import KeyLimits
from services.frontend.routes import Route

Context = grpc.aio.ServicerContext[Any, Any]
Behaviour = Callable[[Any, Context], Awaitable[Any]]
StreamBehaviour = Callable[[Any, Context], AsyncIterator[Any]]
if TYPE_CHECKING:  # generic in the stubs only
    MethodHandler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]]


class RouteInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of every routed method with `wrap` (unary) or
    `wrap_stream` (server streaming)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self._wrapped: dict[str, tuple[MethodHandler, MethodHandler]] = {}

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        raise NotImplementedError

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        route = self.routes.get(method)
        if route is None or handler is None:
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self.wrap(route, cast(Behaviour, handler.unary_unary)),  # aio: a coroutine function
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(route, cast(StreamBehaviour, handler.unary_stream)),  # an async generator
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class ErrorMapping(RouteInterceptor):
    """Every failure as the client's status: a ServiceError (a refusal, or a
    downed backend already named by Backend.call) keeps its code, message and
    trailing metadata, a backend's own status is passed on with its trailing
    metadata unchanged (e.g. history's "cairn-attempt-gone"), anything else is
    INTERNAL and logged."""

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        name = route.method

        async def mapped(request: Any, context: Context) -> Any:
            try:
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                status = status_of(exc, name)
            await context.abort(status.code, status.message, status.trailing_metadata)
            raise AssertionError("unreachable")  # abort raises

        return mapped

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        name = route.method

        async def mapped(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for message in behaviour(request, context):
                    yield message
                return
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                status = status_of(exc, name)
            await context.abort(status.code, status.message, status.trailing_metadata)

        return mapped


class Authorization(RouteInterceptor):
    """Who calls, and whether they may (auth.py): the call's API key is
    authenticated (UNAUTHENTICATED otherwise), an empty namespace becomes the
    key's, and the key's role and namespace are held against the route's
    roles and every namespace the request names (PERMISSION_DENIED). The
    caller is kept in caller.CALLER while the call is served. With auth off
    (no authenticator) nothing is wrapped."""

    def __init__(self, routes: dict[str, Route], authenticator: Authenticator | None) -> None:
        super().__init__(routes)
        self.authenticator = authenticator

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        if self.authenticator is None:
            return behaviour

        async def authorized(request: Any, context: Context) -> Any:
            token = await self.admit(route, request, context)
            try:
                return await behaviour(request, context)
            finally:
                CALLER.reset(token)

        return authorized

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        if self.authenticator is None:
            return behaviour

        async def authorized(request: Any, context: Context) -> AsyncIterator[Any]:
            await self.admit(route, request, context)
            async for message in behaviour(request, context):
                yield message

        return authorized

    async def admit(self, route: Route, request: Any, context: Context) -> contextvars.Token[Caller | None]:
        assert self.authenticator is not None
        caller = await self.authenticator.caller(context.invocation_metadata())
        if not isinstance(request, check.Undecodable):  # refused next, by Decoding
            if not request.namespace and not caller.everywhere:
                request.namespace = caller.namespace
            default_namespace(request)
            auth.authorize(caller, route.roles, route.method, request, _batch_items(request))
        return CALLER.set(caller)


def default_namespace(request: Any) -> None:
    """The one place a request's namespace is filled in: empty means
    DEFAULT_NAMESPACE, and an item of a batch without one takes the batch's (an
    item naming another namespace is left for validation to refuse)."""
    if not request.namespace:
        request.namespace = DEFAULT_NAMESPACE
    for item in _batch_items(request):
        if not item.namespace:
            item.namespace = request.namespace


def _batch_items(request: Any) -> Iterable[Any]:
    if isinstance(request, rpb.BatchTriggerRunsRequest):
        return request.runs
    if isinstance(request, wpb.BatchWriteRequest):
        return [getattr(w, kind) for w in request.writes if (kind := w.WhichOneof("write")) is not None]
    return ()


def default_traceparent(request: Any, context: Context) -> None:
    """A trigger's W3C trace context from the call's `traceparent` metadata,
    for each run whose options.traceparent is empty, so any gRPC client that
    propagates W3C context joins its trace. An invalid header is ignored, as
    W3C asks (the request's own field is validated)."""
    if isinstance(request, rpb.TriggerRunRequest):
        items: Iterable[Any] = (request,)
    elif isinstance(request, rpb.BatchTriggerRunsRequest):
        items = request.runs
    else:
        return
    sent = [v for k, v in context.invocation_metadata() or () if k == tracing.METADATA_KEY]
    if len(sent) != 1 or not isinstance(sent[0], str) or not tracing.is_valid(sent[0]):
        return
    for item in items:
        if not item.options.traceparent:
            item.options.traceparent = sent[0]


class NamespaceDefaulting(RouteInterceptor):
    """Fills in the namespace of every routed request (default_namespace), and
    a trigger's trace context from its metadata (default_traceparent)."""

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        async def defaulted(request: Any, context: Context) -> Any:
            default_namespace(request)
            default_traceparent(request, context)
            return await behaviour(request, context)

        return defaulted

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        async def defaulted(request: Any, context: Context) -> AsyncIterator[Any]:
            default_namespace(request)
            async for message in behaviour(request, context):
                yield message

        return defaulted


class Validation(RouteInterceptor):
    """Refuses an invalid request before it is routed: the route's precheck,
    then the namespace, then the route's own checks (validation.py), none of
    which changes the request."""

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        async def validated(request: Any, context: Context) -> Any:
            self.check(route, request)
            return await behaviour(request, context)

        return validated

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        async def validated(request: Any, context: Context) -> AsyncIterator[Any]:
            self.check(route, request)
            async for message in behaviour(request, context):
                yield message

        return validated

    @staticmethod
    def check(route: Route, request: Any) -> None:
        if route.precheck is not None:
            route.precheck(request)
        check.namespace(request.namespace)
        route.validate(request)


class Decoding(RouteInterceptor):
    """Refuses a request whose bytes could not be read as its message
    (validation.Undecodable) before anything looks at its fields."""

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        async def decoded(request: Any, context: Context) -> Any:
            if isinstance(request, check.Undecodable):
                raise request.refusal()
            return await behaviour(request, context)

        return decoded

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        async def decoded(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, check.Undecodable):
                raise request.refusal()
            async for message in behaviour(request, context):
                yield message

        return decoded


class KeyLimiting(RouteInterceptor):
    """The limits per API key (caller_limits.py), right after the key is known:
    a call over its key's request rate, or a long poll or stream over its bound
    of open ones, is RESOURCE_EXHAUSTED with a retry delay, before anything
    reads it. Without limits (auth off) nothing is wrapped."""

    def __init__(self, routes: dict[str, Route], limits: KeyLimits | None) -> None:
        super().__init__(routes)
        self.limits = limits

    def wrap(self, route: Route, behaviour: Behaviour) -> Behaviour:
        limits = self.limits
        if limits is None:
            return behaviour
        held = route.path in caller_limits.HELD

        async def limited(request: Any, context: Context) -> Any:
            caller = CALLER.get()
            if caller is None:
                return await behaviour(request, context)
            limits.admit(caller.key_id, held)
            if not held:
                return await behaviour(request, context)
            try:
                return await behaviour(request, context)
            finally:
                limits.release(caller.key_id)

        return limited

    def wrap_stream(self, route: Route, behaviour: StreamBehaviour) -> StreamBehaviour:
        limits = self.limits
        if limits is None:
            return behaviour
        held = route.path in caller_limits.HELD

        async def limited(request: Any, context: Context) -> AsyncIterator[Any]:
            caller = CALLER.get()
            if caller is not None:
                limits.admit(caller.key_id, held)
            try:
                async for message in behaviour(request, context):
                    yield message
            finally:
                if caller is not None and held:
                    limits.release(caller.key_id)

        return limited


def chain(
    routes: dict[str, Route], authenticator: Authenticator | None, limits: KeyLimits | None = None
) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of the frontend's server, outermost first; without an
    authenticator (--insecure-no-auth) every call is allowed, and no key is limited."""
    return [
        ErrorMapping(routes),
        Authorization(routes, authenticator),
        KeyLimiting(routes, limits if authenticator is not None else None),
        Decoding(routes),
        NamespaceDefaulting(routes),
        Validation(routes),
    ]
