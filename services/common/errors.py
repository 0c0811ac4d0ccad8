"""Errors a service raises on purpose, and the wrapper that turns every error
into a gRPC status: a ServiceError keeps its code, message and trailing
metadata, a failure of a downstream service keeps its code, message and
trailing metadata (passed on unchanged), anything else becomes INTERNAL with no
stack trace sent to the client (it goes to the log)."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import grpc

from cairn.v1 import worker_service_pb2 as wpb

log = logging.getLogger("cairn.rpc")
T = TypeVar("T")

Metadata = tuple[tuple[str, str | bytes], ...]

# The trailing metadata entry of a FAILED_PRECONDITION refusing a write or
# heartbeat of an attempt that is no longer current: its value is the
# AttemptGone name without its prefix, in lower case (worker_service.proto).
ATTEMPT_GONE_KEY = "cairn-attempt-gone"
_GONE_PREFIX = "ATTEMPT_GONE_"
_GONE = (
    wpb.ATTEMPT_GONE_CANCELED,
    wpb.ATTEMPT_GONE_TIMED_OUT,
    wpb.ATTEMPT_GONE_SUPERSEDED,
    wpb.ATTEMPT_GONE_ENDED,
)


class ServiceError(Exception):
    """An expected refusal, sent to the client as its gRPC status, message and
    trailing metadata (none by default)."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing_metadata: Metadata = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailing_metadata = tuple(trailing_metadata)


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str, trailing_metadata: Metadata = ()) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message, trailing_metadata)


def already_exists(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, message)


def unauthenticated(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message)


def permission_denied(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, message)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


def attempt_gone_name(gone: wpb.AttemptGone) -> str:
    """The metadata value of an AttemptGone: ATTEMPT_GONE_TIMED_OUT -> "timed_out"."""
    return wpb.AttemptGone.Name(gone).removeprefix(_GONE_PREFIX).lower()


def attempt_gone(message: str, gone: wpb.AttemptGone) -> ServiceError:
    """FAILED_PRECONDITION for a write or heartbeat of an attempt that is no
    longer current, with the trailing metadata "cairn-attempt-gone" saying why."""
    return precondition(message, ((ATTEMPT_GONE_KEY, attempt_gone_name(gone)),))


def attempt_gone_of(metadata: Metadata) -> wpb.AttemptGone:
    """The AttemptGone a refusal's trailing metadata names (UNSPECIFIED when
    none or an unknown value): what BatchWrite puts in WriteError.attempt_gone."""
    for key, value in metadata:
        if key == ATTEMPT_GONE_KEY:
            text = value.decode() if isinstance(value, bytes) else value
            for gone in _GONE:
                if attempt_gone_name(gone) == text:
                    return gone
    return wpb.ATTEMPT_GONE_UNSPECIFIED


class Status(NamedTuple):
    """What a failed call answers."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Metadata = ()


def downstream_metadata(exc: grpc.aio.AioRpcError) -> Metadata:
    """A downstream failure's trailing metadata, as received."""
    return tuple((key, value) for key, value in exc.trailing_metadata() or ())


def status_of(exc: Exception, method: str) -> Status:
    """The status a call of `method` answers when it raised exc: a ServiceError's
    own, a downstream failure's code, details and trailing metadata, else
    INTERNAL (logged here)."""
    if isinstance(exc, ServiceError):
        return Status(exc.code, exc.message, exc.trailing_metadata)
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        message = exc.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("%s: downstream %s: %s", method, code.name, message)
        return Status(code, message, downstream_metadata(exc))
    return Status(grpc.StatusCode.INTERNAL, internal_message(method, exc))


def internal_message(where: str, exc: BaseException) -> str:
    """Logs an unexpected failure under a fresh error id and returns the
    message the client gets: the id, which finds the log entry, and nothing of
    the failure itself."""
    error_id = secrets.token_hex(6)
    log.error("%s failed (error id %s)", where, error_id, exc_info=exc)
    return f"internal error in {where} (error id {error_id}); the server log has the details under this id"


def rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wraps a grpc.aio servicer method with the error mapping above."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await method(self, request, context)
        except Exception as exc:
            status = status_of(exc, method.__name__)
        await context.abort(status.code, status.message, status.trailing_metadata)
        raise AssertionError("unreachable")  # abort raises

    return wrapper
