"""What an HTTP request's headers give its gRPC call: the key and the trace
context; an Authorization header gRPC metadata cannot carry is a 401, not a
failure of the call (schemathesis found a 500 for `Bearer \\x14`)."""

from __future__ import annotations

import grpc
import pytest

from services.frontend.http.calls import forwarded
from services.frontend.http.errors import HttpError

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_key_and_a_valid_traceparent_are_forwarded() -> None:
    sent = forwarded({"authorization": "Bearer cairn_x", "traceparent": TRACEPARENT})
    assert sent == (("authorization", "Bearer cairn_x"), ("traceparent", TRACEPARENT))
    assert forwarded({"traceparent": "nonsense"}) == ()


@pytest.mark.parametrize("value", ["Bearer \x14", "Bearer é", "x\x7f", "Bearer a\tb"])
def test_an_authorization_metadata_cannot_carry_is_unauthenticated(value: str) -> None:
    with pytest.raises(HttpError) as info:
        forwarded({"authorization": value})
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED and info.value.status == 401
    assert value not in info.value.message
