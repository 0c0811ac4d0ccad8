"""JSON values <-> the public API's protobuf messages, walked by their
descriptors: a request body (or query) becomes the gRPC request, strictly, and
a gRPC response becomes its JSON body with every resource in cairn/run_json.py's
shape (the CLI's --json).

Request fields are the proto's field names. Payload fields take any JSON value
(sent as json/plain, not base64), Durations a number of seconds, Timestamps an
RFC 3339 time with its offset ("2025-01-02T03:04:05Z"), Struct fields an
object, enums their lowercase names ("completed"). A JSON null is an unset
field, except for a payload, where it is the value null. Anything else
(unknown field, wrong type, an integer out of range, text that is not UTF-8)
is a BadRequest naming the field; every rule on values is left to the
frontend's own validation, which each request passes afterwards."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from cairn import key_json, payloads, run_json
from cairn.v1 import common_pb2 as pb

FD = FieldDescriptor
PAYLOAD = pb.Payload.DESCRIPTOR.full_name
DURATION = "google.protobuf.Duration"
TIMESTAMP = "google.protobuf.Timestamp"
TIME_EXAMPLE = "2025-01-02T03:04:05Z"
STRUCT = "google.protobuf.Struct"
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
}
FLOATS = (FD.TYPE_DOUBLE, FD.TYPE_FLOAT)

# The resources of the responses, by message name, rendered by the one converter.
RESOURCES: dict[str, Callable[[Any], Any]] = {
    "cairn.v1.Run": run_json.run_to_dict,
    "cairn.v1.WaitToken": run_json.token_to_dict,
    "cairn.v1.Schedule": run_json.schedule_to_dict,
    "cairn.v1.Queue": run_json.queue_to_dict,
    "cairn.v1.WorkerInfo": run_json.worker_to_dict,
    "cairn.v1.LogLine": run_json.log_line_to_dict,
    "cairn.v1.ApiKey": key_json.key_to_dict,
}
# Fields rendered otherwise than their message's resource: a list of runs has
# summaries (ListRuns loads no attempts, steps or events), as the CLI prints them.
FIELD_RESOURCES: dict[str, Callable[[Any], Any]] = {
    "cairn.v1.ListRunsResponse.runs": run_json.run_summary_to_dict,
}


class BadRequest(ValueError):
    """A body or query that does not fit the request message; the message names the field."""


def enum_names(enum: EnumDescriptor | None) -> dict[str, int]:
    """An enum's values by lowercase name without its prefix (RUN_STATUS_FAILED -> "failed")."""
    if enum is None:
        return {}
    prefix = "_".join(enum.values[0].name.split("_")[:-1]) + "_" if enum.values else ""
    return {v.name.removeprefix(prefix).lower(): v.number for v in enum.values if v.number}


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where}: is not valid Unicode text") from None
    return value


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{where}: must be a number")
    return float(value)


def _scalar(field: Any, where: str, value: Any) -> Any:
    if field.type in INT_RANGES:
        low, high = INT_RANGES[field.type]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{where}: must be an integer")
        if not low <= value <= high:
            raise BadRequest(f"{where}: must be between {low} and {high}")
        return value
    if field.type in FLOATS:
        return _number(where, value)
    if field.type == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise BadRequest(f"{where}: must be true or false")
        return value
    if field.type == FD.TYPE_STRING:
        return _text(where, value)
    if field.type == FD.TYPE_ENUM:
        names = enum_names(field.enum_type)
        if not isinstance(value, str) or value not in names:
            raise BadRequest(f"{where}: must be one of {', '.join(names)}")
        return names[value]
    raise BadRequest(f"{where}: cannot be set over HTTP")  # bytes: none in the public requests


def _set_message(target: Message, where: str, value: Any) -> None:
    """Fills `target` (a message field) from a JSON value."""
    name = target.DESCRIPTOR.full_name
    if name == PAYLOAD:
        try:
            target.data = payloads.encode_json(value)  # type: ignore[attr-defined]
        except payloads.PayloadError as exc:
            raise BadRequest(f"{where}: {exc}") from None
        target.encoding = payloads.JSON  # type: ignore[attr-defined]
    elif name == DURATION:
        seconds = _number(where, value)
        if abs(seconds) > 315_576_000_000:  # the range of a Duration
            raise BadRequest(f"{where}: out of range")
        target.FromNanoseconds(round(seconds * 1e9))  # type: ignore[attr-defined]
    elif name == TIMESTAMP:
        try:  # RFC 3339 takes a lowercase t and z too; protobuf's parser only uppercase ones
            target.FromJsonString(_text(where, value).upper())  # type: ignore[attr-defined]
        except (ValueError, TypeError, OverflowError):  # BadRequest too
            got = repr(value) if len(repr(value)) <= 64 else repr(value)[:60] + "..."
            raise BadRequest(
                f"{where}: must be an RFC 3339 time with its offset, e.g. {TIME_EXAMPLE}, got {got}"
            ) from None
    elif name == STRUCT:
        if not isinstance(value, dict):
            raise BadRequest(f"{where}: must be an object")
        try:
            target.update(value)  # type: ignore[attr-defined]
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"{where}: {exc}") from None
    else:
        fill(target, value, where)


def fill(message: Message, data: Any, where: str = "") -> Message:
    """Sets the fields of `message` from a JSON object; returns the message."""
    if not isinstance(data, dict):
        raise BadRequest(f"{where or 'body'}: must be a JSON object")
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in data.items():
        at = f"{where}.{key}" if where else str(key)
        field = fields.get(key)
        if field is None:
            raise BadRequest(f"{at}: unknown field")
        is_payload = field.message_type is not None and field.message_type.full_name == PAYLOAD
        if value is None and not is_payload:
            continue
        if field.is_repeated:
            if not isinstance(value, list):
                raise BadRequest(f"{at}: must be a list")
            items = getattr(message, key)
            for i, item in enumerate(value):
                if field.message_type is not None:
                    _set_message(items.add(), f"{at}[{i}]", item)
                else:
                    items.append(_scalar(field, f"{at}[{i}]", item))
        elif field.message_type is not None:
            _set_message(getattr(message, key), at, value)
        else:
            setattr(message, key, _scalar(field, at, value))
    return message


def query_value(field: FieldDescriptor, values: list[str]) -> Any:
    """A query parameter's text(s) as the JSON value of its field."""
    if field.is_repeated:
        return [_query_scalar(field, v) for v in values]
    if len(values) > 1:
        raise BadRequest(f"{field.name}: given more than once")
    return _query_scalar(field, values[0])


def _query_scalar(field: FieldDescriptor, text: str) -> Any:
    if field.type in INT_RANGES:
        try:
            return int(text)
        except ValueError:
            raise BadRequest(f"{field.name}: must be an integer, got {text!r}") from None
    if (field.message_type is not None and field.message_type.full_name == DURATION) or field.type in FLOATS:
        try:
            return float(text)
        except ValueError:
            raise BadRequest(f"{field.name}: must be a number, got {text!r}") from None
    if field.type == FD.TYPE_BOOL:
        if text not in ("true", "false"):
            raise BadRequest(f"{field.name}: must be true or false, got {text!r}")
        return text == "true"
    if field.message_type is not None and field.message_type.full_name == TIMESTAMP:
        # an unescaped '+' of the offset (T10:00:00+02:00) comes out of the query as a space
        return re.sub(r" (\d\d:\d\d)$", r"+\1", text)
    return text


def to_json(message: Message) -> dict[str, Any]:
    """A response message as its JSON body: each field by its proto name, a
    resource (run, token, schedule, queue) in run_json's shape, an empty string
    as null."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None:
            render = FIELD_RESOURCES.get(field.full_name) or _renderer(field.message_type)
            if field.is_repeated:
                out[field.name] = [render(v) for v in value]
            else:
                out[field.name] = render(value) if message.HasField(field.name) else None
        elif field.is_repeated:
            out[field.name] = list(value)
        elif field.type == FD.TYPE_STRING:
            out[field.name] = value or None
        else:
            out[field.name] = value
    return out


def _renderer(message_type: Any) -> Callable[[Any], Any]:
    render = RESOURCES.get(message_type.full_name)
    return render if render is not None else to_json
