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


def rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wraps a grpc.aio servicer method with the error mapping above."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except ServiceError as exc:
            code, message = exc.code, exc.message
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            message = exc.details() or code.name
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                log.warning("%s: downstream %s: %s", method.__name__, code.name, message)
        except Exception:
            log.exception("%s failed", method.__name__)
            code = grpc.StatusCode.INTERNAL
            message = f"internal error in {method.__name__}; the server log has the details"
        await context.abort(code, message)
        raise AssertionError("unreachable")  # abort raises

    return wrapper
