"""Errors as HTTP answers: {"code": "<gRPC status name>", "message": "..."}
with the HTTP status of the code. The message is the one the gRPC API gives
(it names the field); no body ever carries a stack trace. A refusal with a
retry delay (a key over its limits: 429) says it in Retry-After, in whole
seconds rounded up."""

from __future__ import annotations

import math

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.common.errors import internal_message

C = grpc.StatusCode
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    C.INVALID_ARGUMENT: 400,
    C.OUT_OF_RANGE: 400,
    C.UNAUTHENTICATED: 401,
    C.PERMISSION_DENIED: 403,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.ABORTED: 409,
    C.FAILED_PRECONDITION: 412,
    C.RESOURCE_EXHAUSTED: 429,
    C.UNIMPLEMENTED: 501,
    C.UNAVAILABLE: 503,
    C.DEADLINE_EXCEEDED: 503,
}


class HttpError(Exception):
    """An answer other than 200: a gRPC code's name and its message."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, when the refusal named a retry delay

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def error_response(code: grpc.StatusCode, message: str, retry_after: float | None = None) -> JSONResponse:
    """The body and status of an error, and its Retry-After when it has a delay."""
    headers = None if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return JSONResponse({"code": code.name, "message": message}, HTTP_STATUS.get(code, 500), headers)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpError)
    return error_response(exc.code, exc.message, exc.retry_after)


async def on_starlette_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route, method not allowed) in the same shape."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return error_response(C.NOT_FOUND, f"no route {request.method} {request.url.path}")
    if status == 405:
        return JSONResponse(
            {
                "code": C.UNIMPLEMENTED.name,
                "message": f"{request.method} is not allowed on {request.url.path}",
            },
            405,
        )
    return JSONResponse({"code": C.UNKNOWN.name, "message": str(getattr(exc, "detail", ""))}, status)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: logged here under an error id, answered with the id only."""
    return error_response(C.INTERNAL, internal_message(f"{request.method} {request.url.path}", exc))
