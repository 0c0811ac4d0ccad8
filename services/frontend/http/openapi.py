"""The OpenAPI 3.1 document of the HTTP API, made at start from the HTTP
routing table (routes.py) and the request and response schemas derived from the
protobuf descriptors and run_json's types (schemas.py); nothing in it is
written by hand but the titles."""

from __future__ import annotations

from typing import Any

from cairn.limits import DEFAULT_NAMESPACE
from services.frontend.http import schemas
from services.frontend.http.routes import HTTP_ROUTES, HttpRoute

INFO = {
    "title": "Cairn HTTP API",
    "version": "v1",
    "description": (
        "Everything the public gRPC API does for clients, as JSON over HTTP. Each request is "
        "the gRPC request message as JSON, by the proto's field names (path and query fields "
        "as parameters); payloads are JSON values, durations numbers of seconds, statuses "
        "lowercase names. Each answer is the gRPC response with its runs, tokens, schedules "
        "and queues in the shape `cairn ... --json` prints. An empty `namespace` means "
        f'`{DEFAULT_NAMESPACE}`. Errors are `{{"code", "message"}}`, the gRPC status '
        "and its message, with the matching HTTP status."
    ),
}
ERROR_RESPONSE = {
    "description": "refused or failed (the gRPC status code's name and its message)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _parameters(route: HttpRoute, components: schemas.Components) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in route.path_fields:
        out.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    for field in route.query_fields():
        schema = components.request_field(field)
        if field.is_repeated:
            schema = {"type": "array", "items": schema["items"]}
        elif "anyOf" in schema:
            schema = schema["anyOf"][0]
        param: dict[str, Any] = {"name": field.name, "in": "query", "required": False, "schema": schema}
        if field.is_repeated:
            param.update(style="form", explode=True)
        out.append(param)
    return out


def _operation(route: HttpRoute, components: schemas.Components) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": f"gRPC `{route.grpc.service.full_name}/{route.grpc.method}`.",
        "tags": [route.tag],
        "parameters": _parameters(route, components),
        "responses": {
            "200": {
                "description": "done",
                "content": {"application/json": {"schema": components.response(route.response_type)}},
            },
            "default": ERROR_RESPONSE,
        },
    }
    if route.has_body:
        body = components.request(route.request_type, frozenset(route.path_fields))
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def document() -> dict[str, Any]:
    """The whole document."""
    components = schemas.Components()
    paths: dict[str, dict[str, Any]] = {}
    for route in HTTP_ROUTES:
        paths.setdefault(route.path, {})[route.verb.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "paths": paths,
        "components": {"schemas": components.schemas},
    }
