"""gRPC status codes as the integers a batch result carries (WriteError.code)."""

from __future__ import annotations

import grpc

_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def to_int(code: grpc.StatusCode) -> int:
    """The number gRPC gives the code (NOT_FOUND is 5)."""
    number: int = code.value[0]
    return number


def from_int(number: int) -> grpc.StatusCode:
    """The code for a number; UNKNOWN for one gRPC does not define."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
