"""Errors a service raises on purpose, and the wrapper that turns every error
into a gRPC status: a ServiceError keeps its code and message, a failure of a
downstream service keeps its code, anything else becomes INTERNAL with no
stack trace sent to the client (it goes to the log)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger("cairn.rpc")
T = TypeVar("T")


class ServiceError(Exception):
    """An expected refusal, sent to the client as its gRPC status and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


def already_exists(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, message)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


def status_of(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status a call of `method` answers when it raised exc: a ServiceError's
    own, a downstream failure's code and details, else INTERNAL (logged here)."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        message = exc.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("%s: downstream %s: %s", method, code.name, message)
        return code, message
    log.error("%s failed", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}; the server log has the details"


def rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wraps a grpc.aio servicer method with the error mapping above."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await method(self, request, context)
        except Exception as exc:
            code, message = status_of(exc, method.__name__)
        await context.abort(code, message)
        raise AssertionError("unreachable")  # abort raises

    return wrapper
