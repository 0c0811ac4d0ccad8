"""The gRPC plumbing Worker and Client share: where to connect, the channel,
retrying transient failures and turning status codes into CairnError types."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from worker_sdk.errors import (AlreadyExistsError, CairnError, FailedPreconditionError,
                               InvalidArgumentError, NotFoundError, UnavailableError)

DEFAULT_ADDRESS = "127.0.0.1:7373"
DEFAULT_NAMESPACE = "default"
# Journals and payloads can be large; the server enforces its own size limits.
_MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                   ("grpc.max_send_message_length", _MAX_MESSAGE)]
# Bound of one write from an attempt (step record, finish, metadata, trigger).
WRITE_TIMEOUT = 10.0
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_ERRORS: dict[grpc.StatusCode, type[CairnError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}

R = TypeVar("R")


def resolve_address(address: str | None) -> str:
    """The argument, else $CAIRN_ADDRESS, else 127.0.0.1:7373."""
    return address or os.environ.get("CAIRN_ADDRESS") or DEFAULT_ADDRESS


def resolve_namespace(namespace: str | None) -> str:
    """The argument, else $CAIRN_NAMESPACE, else "default"."""
    return namespace or os.environ.get("CAIRN_NAMESPACE") or DEFAULT_NAMESPACE


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to the frontend; call inside the event loop that uses it."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def code_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a gRPC error, or None for anything else."""
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code()
    return None


def details_of(exc: grpc.RpcError) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    return details or str(exc)


def to_cairn_error(exc: grpc.RpcError) -> CairnError:
    """The CairnError subclass for the error's status code, with the server's message."""
    code = code_of(exc)
    cls = _ERRORS.get(code, CairnError) if code is not None else CairnError
    return cls(details_of(exc), code)


async def call_mapped(method: Callable[..., Awaitable[R]], request: Any, timeout: float) -> R:
    """Calls a unary method; a gRPC error becomes the matching CairnError."""
    try:
        return await method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise to_cairn_error(exc) from None


async def call_with_retry(method: Callable[..., Awaitable[R]], request: Any, *,
                          timeout: float, give_up_after: float,
                          first_delay: float = 0.05, max_delay: float = 2.0) -> R:
    """Calls a unary method, retrying UNAVAILABLE and DEADLINE_EXCEEDED with a
    doubling delay for up to give_up_after seconds; then, or on any other error,
    raises the last grpc.RpcError."""
    deadline = time.monotonic() + give_up_after
    delay = first_delay
    while True:
        try:
            return await method(request, timeout=timeout)
        except grpc.RpcError as exc:
            if code_of(exc) not in TRANSIENT_CODES or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(max_delay, delay * 2)
