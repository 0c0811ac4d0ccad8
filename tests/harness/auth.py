"""The API key of the test session: every Cluster stores it as its bootstrap
admin key (CAIRN_ADMIN_KEY, a key for every namespace) and hands it to its
workers, the CLI and the SDK (CAIRN_API_KEY); ``channel`` and ``headers`` carry
it on a test's own gRPC and HTTP calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from cairn import keys

ADMIN_KEY = keys.new_key()[1]


def headers(key: str | None = ADMIN_KEY) -> dict[str, str]:
    """HTTP headers that carry a key (none for None)."""
    return {} if key is None else {"authorization": keys.BEARER + key}


def env(key: str = ADMIN_KEY) -> Mapping[str, str]:
    """The variables that give a cluster this admin key and a client this key."""
    return {"CAIRN_ADMIN_KEY": ADMIN_KEY, "CAIRN_API_KEY": key}


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, key: str) -> None:
        self.entry = keys.bearer(key)

    def _with_key(self, details: Any) -> Any:
        metadata = [m for m in details.metadata or () if m[0] != keys.AUTHORIZATION] + [self.entry]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)


def channel(address: str, key: str | None = ADMIN_KEY) -> grpc.Channel:
    """A plaintext channel whose every call carries `key` (none for None)."""
    plain = grpc.insecure_channel(address)
    return plain if key is None else grpc.intercept_channel(plain, _Bearer(key))
