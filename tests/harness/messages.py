"""Building and checking protocol messages: a JSON payload, a Duration, an
error text that must not leak a stack trace, and an RPC that must fail with a
given status and message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from cairn.v1 import common_pb2 as cpb


def json_payload(value: Any) -> cpb.Payload:
    """A json/plain Payload message of value."""
    return cpb.Payload(data=json.dumps(value).encode(), encoding="json/plain")


def seconds(value: float) -> Duration:
    """A Duration message of value seconds."""
    d = Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def assert_clean(details: str) -> None:
    """Asserts an error message (an RPC's details, an exception, stderr) holds no
    stack trace."""
    assert "Traceback" not in details, details
    assert 'File "' not in details, details


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    """Runs call; asserts it fails with `code`, a message containing every word
    (case-insensitive) and no stack trace. Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for word in words:
        assert word.lower() in details.lower(), f"{word!r} not named in {details!r}"
    assert_clean(details)
    return details
