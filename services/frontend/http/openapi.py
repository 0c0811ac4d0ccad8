"""The OpenAPI 3.1 document of the HTTP API, made at start from the HTTP
routing table (routes.py) and the request and response schemas derived from the
protobuf descriptors and run_json's types (schemas.py); nothing in it is
written by hand but the titles."""

from __future__ import annotations

from typing import Any

from cairn import run_json
from cairn.limits import DEFAULT_NAMESPACE
from services.frontend.http import schemas
from services.frontend.http.routes import HTTP_ROUTES, HttpRoute

INFO = {
    "title": "Cairn HTTP API",
    "version": "v1",
    "description": (
        "Everything the public gRPC API does for clients, as JSON over HTTP. Each request is "
        "the gRPC request message as JSON, by the proto's field names (path and query fields "
        "as parameters); payloads are JSON values, durations numbers of seconds, times RFC "
        "3339 (2025-01-02T03:04:05Z), statuses lowercase names. Each answer is the gRPC "
        "response with its runs, tokens, schedules and queues in the shape `cairn ... --json` "
        "prints. An empty `namespace` means "
        f'`{DEFAULT_NAMESPACE}`. Errors are `{{"code", "message"}}`, the gRPC status '
        "and its message, with the matching HTTP status."
    ),
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this event id (sent by a reconnecting EventSource); "
    "it takes the place of after_event_id",
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
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
        param: dict[str, Any] = {
            "name": route.query_name(field),
            "in": "query",
            "required": False,
            "schema": schema,
        }
        if field.is_repeated:
            param.update(style="form", explode=True)
        out.append(param)
    if route.stream and "after_event_id" in route.request_type.fields_by_name:
        out.append(LAST_EVENT_ID)
    return out


def _event_stream(components: schemas.Components) -> dict[str, Any]:
    """The 200 answer of a streaming route: Server-Sent Events, each `id: <event
    id>` and `data: <a RunUpdateJSON>`."""
    update = components.typed(run_json.RunUpdateJSON)
    return {
        "description": (
            "text/event-stream: one event per update, `id:` the run event's id and `data:` the "
            "update as one line of JSON (RunUpdateJSON: event, run, done). A failure after the "
            'stream started ends it with `event: error` and `{"code", "message"}` as data. '
            "Errors before it starts are JSON bodies as elsewhere."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": update}},
    }


def _operation(route: HttpRoute, components: schemas.Components) -> dict[str, Any]:
    ok = _event_stream(components) if route.stream else None
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": f"gRPC `{route.grpc.service.full_name}/{route.grpc.method}`.",
        "tags": [route.tag],
        "parameters": _parameters(route, components),
        "responses": {
            "200": ok
            or {
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


# Every route needs an API key (unless the frontend runs with --insecure-no-auth).
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`cairn keys create`), as `Authorization: Bearer cairn_...`. "
        "A missing or bad key is 401, a key used outside its namespace or role 403.",
    }
}


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
        "components": {"schemas": components.schemas, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"apiKey": []}],
    }
