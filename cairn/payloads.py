"""Payload encodings: what the frontend accepts and what the SDKs produce, the
one definition of the rules of common.proto's Payload. Bytes pass through the
cluster unchanged; only the frontend parses them, once, to refuse invalid input.

The encodings (ENCODINGS):
- "json/plain" (JSON; also the empty encoding): UTF-8 JSON text (RFC 8259: no
  NaN or Infinity), checked. Empty data is JSON null, except where a value is
  required (a completed step's output: `required=True`), which must be JSON
  text (null is the 4 bytes `null`).
- "binary/plain" (BINARY): any bytes, not checked, passed through.
- "proto/cairn.v1.ChildResults" (CHILD_RESULTS): a serialized ChildResults,
  written by history only (a children wait's step output); refused from a
  client or worker.
Clients and workers may send ACCEPTED (json/plain and binary/plain); anything
else is refused naming the encoding and listing the accepted ones."""

from __future__ import annotations

import json
from typing import Any, Literal

JSON = "json/plain"
BINARY = "binary/plain"
CHILD_RESULTS = "proto/cairn.v1.ChildResults"
ENCODINGS = (JSON, BINARY, CHILD_RESULTS)  # every encoding a stored payload may have
ACCEPTED = (JSON, BINARY)  # what a client or worker may send

_ACCEPTED_TEXT = f"accepted: {JSON!r} (the default when empty), {BINARY!r}"


class PayloadError(ValueError):
    """A payload that is not valid for its encoding. `part` says which field of
    the Payload is wrong: "data" or "encoding"."""

    def __init__(self, message: str, part: Literal["data", "encoding"] = "data") -> None:
        super().__init__(message)
        self.part = part


def encode_json(value: Any) -> bytes:
    """Encodes a JSON-serialisable value as json/plain bytes."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serialisable: {exc}") from None


class _NotJSON(ValueError):
    """A constant Python's parser accepts but JSON has not (NaN, Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not valid UTF-8 at byte {exc.start}") from None


def _parse(data: bytes, *, values: bool) -> Any:
    """JSON text parsed, with messages of our own (never the parser's words):
    "not valid JSON (line L, column C)". Without `values` the numbers are not
    converted (checking only: no digit limit applies)."""
    text = _text(data)
    hooks: dict[str, Any] = {"parse_constant": _refuse_constant}
    if not values:
        hooks.update(parse_int=lambda s: 0, parse_float=lambda s: 0.0)
    try:
        return json.loads(text, **hooks)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except _NotJSON as exc:
        raise PayloadError(f"not valid JSON ({exc} is not a JSON value)") from None
    except RecursionError:
        raise PayloadError("not valid JSON here (nested too deeply)") from None
    except ValueError:  # e.g. an integer beyond Python's digit limit
        raise PayloadError("not readable as JSON here (a number is too long)") from None


def _encoding_error(encoding: str) -> PayloadError:
    if encoding == CHILD_RESULTS:
        return PayloadError(
            f"{encoding!r} is written by history only (a children wait's result); {_ACCEPTED_TEXT}",
            "encoding",
        )
    return PayloadError(f"{encoding!r} is not an accepted encoding; {_ACCEPTED_TEXT}", "encoding")


def validate(data: bytes, encoding: str, *, required: bool = False) -> None:
    """Raises PayloadError when a client's or worker's payload is not valid:
    an encoding outside ACCEPTED, json/plain data that is not JSON text, or,
    with `required`, empty json/plain data (a value is required; JSON null is
    `null`). binary/plain data is not checked."""
    encoding = encoding or JSON
    if encoding not in ACCEPTED:
        raise _encoding_error(encoding)
    if encoding == JSON:
        if not data:
            if required:
                raise PayloadError("empty: a value is required (JSON text; null is the 4 bytes `null`)")
            return
        _parse(data, values=False)


def decode(data: bytes, encoding: str) -> Any:
    """A payload's value: json/plain decoded (empty bytes are None), binary/plain
    as its bytes. Raises PayloadError naming the problem, and for any other
    encoding (a ChildResults is decoded from its protobuf message by its reader)."""
    encoding = encoding or JSON
    if encoding == BINARY:
        return bytes(data)
    if encoding != JSON:
        raise PayloadError(f"cannot decode encoding {encoding!r} as a value; decodable: {JSON!r}, {BINARY!r}")
    if not data:
        return None
    return _parse(data, values=True)


def read(data: bytes, encoding: str) -> Any:
    """A payload's value for a reader (the SDK's runs): decoded, or a
    description of it when this side cannot decode it ({"encoding", "bytes"})."""
    try:
        return decode(data, encoding)
    except PayloadError:
        return {"encoding": encoding, "bytes": len(data)}


def whole_numbers(value: Any) -> Any:
    """A protobuf Struct's numbers are doubles: whole ones become ints again, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value
