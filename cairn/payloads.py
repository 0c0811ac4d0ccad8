"""Payload encodings: what the frontend accepts and what the SDKs produce.
Bytes pass through the cluster unchanged; only the frontend parses them, once,
to refuse invalid input."""

from __future__ import annotations

import json
from typing import Any

JSON = "json/plain"
ENCODINGS = (JSON,)


class PayloadError(ValueError):
    """A payload that is not valid for its encoding."""


def encode_json(value: Any) -> bytes:
    """Encodes a JSON-serialisable value as json/plain bytes."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serialisable: {exc}") from None


def decode(data: bytes, encoding: str) -> Any:
    """Decodes payload bytes; empty bytes are None. Raises PayloadError naming the problem."""
    encoding = encoding or JSON
    if encoding != JSON:
        raise PayloadError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def read(data: bytes, encoding: str) -> Any:
    """A payload's value for a reader (the SDK's runs, the CLI's JSON): decoded,
    or a description of it when this side cannot decode its encoding."""
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


def validate(data: bytes, encoding: str) -> None:
    """Raises PayloadError when data is not valid for encoding."""
    decode(data, encoding)
