"""The CLI's channel to the frontend(s) and what its calls raise: the channel
(plaintext or TLS, every call carrying the API key), FrontendError for a
refusal and Unreachable when no frontend answered."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc

from cairn import addresses
from cairn.credentials import ApiKey, ClientTLS


class FrontendError(Exception):
    """The frontend refused a call; the message is its explanation."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(FrontendError):
    """No frontend answered (UNAVAILABLE), or its host name does not resolve."""


def error(exc: grpc.RpcError) -> FrontendError:
    """The FrontendError of a failed call: Unreachable for UNAVAILABLE."""
    code: grpc.StatusCode | None = exc.code() if callable(getattr(exc, "code", None)) else None
    details = (exc.details() if callable(getattr(exc, "details", None)) else None) or str(exc)
    cls = Unreachable if code == grpc.StatusCode.UNAVAILABLE else FrontendError
    return cls(details, code)


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):
    """A call's details with other metadata (gRPC's own class is private)."""


class _WithMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds metadata (the API key) to every call of a channel, streams included."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        metadata = (*self._metadata, *(details.metadata or ()))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(address: str, api_key: ApiKey | None, tls: ClientTLS | None) -> grpc.Channel:
    """A channel to the frontend(s) at address (host:port, a comma-separated
    list, or a gRPC target) with the client options of cairn.addresses
    (round-robin, quick reconnects, the channel's retries of idempotent
    methods), over TLS when tls is given, every call carrying the API key.
    Unreachable when a host name of a list does not resolve."""
    try:
        target = addresses.channel_target(address)
    except addresses.UnresolvedHost as exc:
        raise Unreachable(str(exc), grpc.StatusCode.UNAVAILABLE) from None
    options = addresses.client_channel_options()
    if tls is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
        channel = grpc.secure_channel(target, creds, options=options)
    if api_key is not None:
        channel = grpc.intercept_channel(channel, _WithMetadata(api_key.metadata))
    return channel
