"""Building and checking protocol messages: a JSON payload, and an error text
that must not leak a stack trace."""

from __future__ import annotations

import json
from typing import Any

from cairn.v1 import common_pb2 as cpb


def json_payload(value: Any) -> cpb.Payload:
    """A json/plain Payload message of value."""
    return cpb.Payload(data=json.dumps(value).encode(), encoding="json/plain")


def assert_clean(details: str) -> None:
    """Asserts an error message (an RPC's details, an exception, stderr) holds no
    stack trace."""
    assert "Traceback" not in details, details
    assert 'File "' not in details, details
