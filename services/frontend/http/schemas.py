"""JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of the HTTP bodies, made
from code: a request's from its message descriptor, read the way messages.fill
reads it; a response's from its descriptor too, each resource (run, token,
schedule, queue) from the TypedDict that names run_json's keys. Named schemas go
into `components` (Components.ref) so each appears once in the document."""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from cairn import key_json, run_json
from services.frontend.http import messages

FD = FieldDescriptor
Schema = dict[str, Any]

RESOURCE_TYPES: dict[str, type] = {
    "cairn.v1.Run": run_json.RunJSON,
    "cairn.v1.WaitToken": run_json.TokenJSON,
    "cairn.v1.Schedule": run_json.ScheduleJSON,
    "cairn.v1.Queue": run_json.QueueJSON,
    "cairn.v1.WorkerInfo": run_json.WorkerJSON,
    "cairn.v1.LogLine": run_json.LogLineJSON,
    "cairn.v1.ApiKey": key_json.KeyJSON,
}
# As messages.FIELD_RESOURCES.
FIELD_TYPES: dict[str, type] = {
    "cairn.v1.ListRunsResponse.runs": run_json.RunSummaryJSON,
}
ERROR: Schema = {
    "type": "object",
    "description": "A refused or failed call: the gRPC status code's name and a message naming the field.",
    "properties": {
        "code": {"type": "string", "examples": ["INVALID_ARGUMENT"]},
        "message": {"type": "string"},
    },
    "required": ["code", "message"],
    "additionalProperties": False,
}
ANY_JSON: Schema = {"description": "any JSON value"}


class Components:
    """The named schemas of the document, filled as they are referred to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {"Error": ERROR}

    def ref(self, name: str, make: typing.Callable[[], Schema]) -> Schema:
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: a type that refers to itself stops here
            self.schemas[name] = make()
        return {"$ref": f"#/components/schemas/{name}"}

    # ---- requests ----------------------------------------------------------------

    def request(self, message: Descriptor, omit: frozenset[str] = frozenset()) -> Schema:
        """The body of a request message, without the fields taken from the path or query."""
        return self._object(message, omit)

    def _object(self, message: Descriptor, omit: frozenset[str] = frozenset()) -> Schema:
        properties = {f.name: self.request_field(f) for f in message.fields if f.name not in omit}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def request_field(self, field: FieldDescriptor) -> Schema:
        """The JSON a request field takes (null for an unset one, except a payload)."""
        one = self._request_value(field)
        if field.is_repeated:
            return {"type": ["array", "null"], "items": one}
        if field.message_type is not None and field.message_type.full_name == messages.PAYLOAD:
            return one
        return {"anyOf": [one, {"type": "null"}]}

    def _request_value(self, field: FieldDescriptor) -> Schema:
        msg = field.message_type
        if msg is not None:
            if msg.full_name == messages.PAYLOAD:
                return {"description": "the payload, any JSON value (sent as json/plain)"}
            if msg.full_name == messages.DURATION:
                return {"type": "number", "description": "seconds"}
            if msg.full_name == messages.TIMESTAMP:
                return {"type": "string", "format": "date-time", "examples": [messages.TIME_EXAMPLE]}
            if msg.full_name == messages.STRUCT:
                return {"type": "object"}
            return self.ref(msg.name + "Input", lambda: self._object(msg))
        if field.type in messages.INT_RANGES:
            low, high = messages.INT_RANGES[field.type]
            return {"type": "integer", "minimum": low, "maximum": high}
        if field.type in messages.FLOATS:
            return {"type": "number"}
        if field.type == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == FD.TYPE_ENUM:
            return {"type": "string", "enum": list(messages.enum_names(field.enum_type))}
        return {"type": "string"}

    # ---- responses ---------------------------------------------------------------

    def response(self, message: Descriptor) -> Schema:
        """The body messages.to_json makes of a response message."""
        return self.ref(message.name, lambda: self._response_object(message))

    def _response_object(self, message: Descriptor) -> Schema:
        properties = {f.name: self._response_field(f) for f in message.fields}
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def _response_field(self, field: FieldDescriptor) -> Schema:
        msg = field.message_type
        if msg is not None:
            resource = FIELD_TYPES.get(field.full_name) or RESOURCE_TYPES.get(msg.full_name)
            one = self.typed(resource) if resource is not None else self.response(msg)
            return (
                {"type": "array", "items": one} if field.is_repeated else {"anyOf": [one, {"type": "null"}]}
            )
        one = self._request_value(field)
        if field.is_repeated:
            return {"type": "array", "items": one}
        return {"type": ["string", "null"]} if field.type == FD.TYPE_STRING else one

    def typed(self, hint: Any) -> Schema:
        """The schema of a type hint of run_json (a TypedDict, a list, an optional, a scalar)."""
        if is_typeddict(hint):
            return self.ref(hint.__name__, lambda: self._typed_dict(hint))
        origin = get_origin(hint)
        if origin in (Union, types.UnionType):
            parts = [self.typed(a) for a in get_args(hint) if a is not type(None)]
            one = parts[0] if len(parts) == 1 else {"anyOf": parts}
            return {"anyOf": [one, {"type": "null"}]} if type(None) in get_args(hint) else one
        if origin is list:
            return {"type": "array", "items": self.typed(get_args(hint)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.typed(get_args(hint)[1])}
        simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
        if hint in simple:
            return {"type": simple[hint]}
        return dict(ANY_JSON)  # JSONValue

    def _typed_dict(self, hint: Any) -> Schema:
        hints = get_type_hints(hint)
        return {
            "type": "object",
            "description": (hint.__doc__ or "").strip(),
            "properties": {k: self.typed(v) for k, v in hints.items()},
            "required": list(hints),
            "additionalProperties": False,
        }
