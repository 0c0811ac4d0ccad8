"""The HTTP API reads a request body only up to its bound: a larger one, by its
Content-Length or as it streams, is a 400 naming the body, never held whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from services.frontend.http import app, messages


def request(chunks: list[bytes], length: int | None = None) -> Request:
    pending = list(chunks)
    headers = [] if length is None else [(b"content-length", str(length).encode())]

    async def receive() -> dict[str, Any]:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return Request({"type": "http", "method": "POST", "path": "/v1/runs", "headers": headers}, receive)


def test_a_body_within_the_bound_is_read_whole() -> None:
    assert asyncio.run(app.body(request([b"{", b"}"]), limit=10)) == b"{}"


@pytest.mark.parametrize("length", [None, 11])
def test_a_body_past_the_bound_is_refused_naming_it(length: int | None) -> None:
    with pytest.raises(messages.BadRequest, match="body: .*exceeds the limit of 10 bytes"):
        asyncio.run(app.body(request([b"x" * 6, b"x" * 6], length), limit=10))


def test_the_bound_follows_the_servers_message_size() -> None:
    from services.common import grpc_server

    assert app.MAX_BODY_BYTES == 2 * grpc_server.MAX_MESSAGE_BYTES
