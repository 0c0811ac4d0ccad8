"""The HTTP app: one endpoint per line of the HTTP routing table, each
reading its request message from the path, query and JSON body, calling the
gRPC method through the frontend's own interceptors (calls.py) and answering
with the response as JSON (messages.to_json), or, for a streaming method, as
Server-Sent Events (stream_endpoint); plus /openapi.json, /docs (Redoc,
vendored under static/), /metrics (Prometheus, the default registry), and the
dashboard's pages and files (dashboard.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cairn import run_json
from cairn.v1 import run_service_pb2 as rpb
from services.common import grpc_server
from services.frontend.http import dashboard, errors, messages, openapi
from services.frontend.http.calls import GrpcCaller, forwarded
from services.frontend.http.errors import HttpError
from services.frontend.http.routes import HTTP_ROUTES, HttpRoute, with_inputs

STATIC = Path(__file__).parent / "static"
# An event stream is not cached, nor buffered by a proxy (nginx honours X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A request body's bound: the gRPC request it becomes is bounded by the server's
# message size, and its JSON may take twice the bytes (escapes).
MAX_BODY_BYTES = 2 * grpc_server.MAX_MESSAGE_BYTES
DOCS_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Cairn HTTP API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="static/redoc.standalone.js"></script></body></html>
"""


class _Asgi:
    """An ASGI app as a Route's endpoint (Starlette calls a plain function with a Request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, read up to `limit` bytes: a larger one is refused
    before it is held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise messages.BadRequest(f"body: its Content-Length exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise messages.BadRequest(f"body: exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_request(route: HttpRoute, request: Request) -> Message:
    """The gRPC request message of an HTTP request: path fields, then query or body."""
    data: dict[str, Any] = {}
    if route.has_body:
        raw = await body(request)
        if raw.strip():
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise messages.BadRequest(f"body: not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise messages.BadRequest("body: must be a JSON object")
        for name in route.path_fields:
            if name in data:
                raise messages.BadRequest(f"{name}: is taken from the path, not the body")
    else:
        fields = {route.query_name(f): f for f in route.query_fields()}
        for name in request.query_params:
            if name not in fields:
                raise messages.BadRequest(f"{name}: unknown query parameter")
            data[fields[name].name] = messages.query_value(fields[name], request.query_params.getlist(name))
    data.update(request.path_params)
    return messages.fill(route.new_request(), data)


def endpoint(route: HttpRoute, caller: GrpcCaller) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one route."""

    async def handle(request: Request) -> Response:
        try:
            message = await read_request(route, request)
        except messages.BadRequest as exc:
            raise HttpError(errors.C.INVALID_ARGUMENT, str(exc)) from None
        response = with_inputs(message, await caller.call(route, message, forwarded(request.headers)))
        return JSONResponse(messages.to_json(response))

    return handle


def last_event_id(route: HttpRoute, request: Request, message: Message) -> None:
    """A reconnecting EventSource's Last-Event-ID header: the watch resumes
    after that event (it takes the place of an after_event_id query parameter)."""
    header = request.headers.get("last-event-id")
    if header is None or "after_event_id" not in message.DESCRIPTOR.fields_by_name:
        return
    text = header.strip()
    if not text.isdigit() or len(text) > 19:
        raise HttpError(errors.C.INVALID_ARGUMENT, f"Last-Event-ID: must be an event id, got {header[:40]!r}")
    setattr(message, "after_event_id", int(text))  # noqa: B010 (a WatchRun or WatchRuns request)


def sse(response: Message) -> str:
    """A message's updates as Server-Sent Events, one each: its event id, and
    its JSON (run_json) as data."""
    assert isinstance(response, rpb.WatchRunResponse | rpb.WatchRunsResponse)
    return "".join(
        f"id: {u.event.id}\ndata: {json.dumps(run_json.run_update_to_dict(u), separators=(',', ':'))}\n\n"
        for u in response.updates
    )


def stream_endpoint(route: HttpRoute, caller: GrpcCaller) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a streaming route: errors before the stream starts as JSON
    (unknown run 404, bad Last-Event-ID 400), then text/event-stream, one event
    per update, until the gRPC stream ends (WatchRun: after the run's last
    event). A failure after the start is a last `event: error` with the usual
    {"code", "message"} as data. A client that goes away cancels the call."""

    async def handle(request: Request) -> Response:
        try:
            message = await read_request(route, request)
        except messages.BadRequest as exc:
            raise HttpError(errors.C.INVALID_ARGUMENT, str(exc)) from None
        last_event_id(route, request, message)
        call = await caller.open_stream(route, message, forwarded(request.headers))

        async def events() -> AsyncIterator[str]:
            try:
                async for response in call:
                    yield sse(response)
            except grpc.aio.AioRpcError as exc:
                error = {"code": exc.code().name, "message": exc.details() or exc.code().name}
                yield f"event: error\ndata: {json.dumps(error)}\n\n"
            finally:
                call.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    return handle


def make_app(caller: GrpcCaller) -> Starlette:
    """The app, its routes calling through `caller`."""
    document = openapi.document()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    routes: list[BaseRoute] = [
        Route(
            r.path,
            (stream_endpoint if r.stream else endpoint)(r, caller),
            methods=[r.verb],
            name=r.operation_id,
        )
        for r in HTTP_ROUTES
    ]
    routes += [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/metrics", _Asgi(make_asgi_app()), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *dashboard.routes(),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HttpError: errors.on_http_error,
            HTTPException: errors.on_starlette_error,
            Exception: errors.on_unexpected,
        },
    )
