"""The HTTP app: one endpoint per line of the HTTP routing table, each
reading its request message from the path, query and JSON body, calling the
gRPC method through the frontend's own interceptors (calls.py) and answering
with the response as JSON (messages.to_json); plus /openapi.json, /docs (Redoc,
vendored under static/), and /metrics (Prometheus, the default registry)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from prometheus_client import make_asgi_app
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from services.frontend.http import errors, messages, openapi
from services.frontend.http.calls import GrpcCaller
from services.frontend.http.errors import HttpError
from services.frontend.http.routes import HTTP_ROUTES, HttpRoute, with_inputs

STATIC = Path(__file__).parent / "static"
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


async def read_request(route: HttpRoute, request: Request) -> Message:
    """The gRPC request message of an HTTP request: path fields, then query or body."""
    data: dict[str, Any] = {}
    if route.has_body:
        raw = await request.body()
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
        fields = {f.name: f for f in route.query_fields()}
        for name in request.query_params:
            if name not in fields:
                raise messages.BadRequest(f"{name}: unknown query parameter")
            data[name] = messages.query_value(fields[name], request.query_params.getlist(name))
    data.update(request.path_params)
    return messages.fill(route.new_request(), data)


def endpoint(route: HttpRoute, caller: GrpcCaller) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one route."""

    async def handle(request: Request) -> Response:
        try:
            message = await read_request(route, request)
        except messages.BadRequest as exc:
            raise HttpError(errors.C.INVALID_ARGUMENT, str(exc)) from None
        response = with_inputs(message, await caller.call(route, message))
        return JSONResponse(messages.to_json(response))

    return handle


def make_app(caller: GrpcCaller) -> Starlette:
    """The app, its routes calling through `caller`."""
    document = openapi.document()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    routes: list[BaseRoute] = [
        Route(r.path, endpoint(r, caller), methods=[r.verb], name=r.operation_id) for r in HTTP_ROUTES
    ]
    routes += [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/metrics", _Asgi(make_asgi_app()), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HttpError: errors.on_http_error,
            HTTPException: errors.on_starlette_error,
            Exception: errors.on_unexpected,
        },
    )
