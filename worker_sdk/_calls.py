"""Calls an attempt makes to the server besides step records (suspending,
metadata, triggering children, creating tokens): retried while the server is
unreachable, for up to a lease, and fenced: a refusal that says the attempt is
no longer current abandons it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from worker_sdk._attempt import AttemptAbandoned, AttemptContext
from worker_sdk._grpc import (
    TRANSIENT_CODES,
    WRITE_TIMEOUT,
    call_with_retry,
    code_of,
    details_of,
    to_cairn_error,
)

R = TypeVar("R")
FENCED = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})


async def attempt_call(
    ctx: AttemptContext,
    method: Callable[..., Awaitable[R]],
    request: Any,
    what: str,
    fenced: frozenset[grpc.StatusCode] = FENCED,
) -> R:
    """Calls method(request) for the attempt. A code in `fenced`, or a server
    unreachable for a whole lease (by then another attempt may run), abandons the
    attempt (AttemptAbandoned); any other refusal raises the mapped CairnError."""
    try:
        return await call_with_retry(method, request, timeout=WRITE_TIMEOUT, give_up_after=ctx.lease_seconds)
    except grpc.RpcError as exc:
        code = code_of(exc)
        if code in fenced or code in TRANSIENT_CODES:
            ctx.abandoned = True
            raise AttemptAbandoned(
                f"run {ctx.run_id} attempt {ctx.attempt}: {what} failed with "
                f"{code.name if code else type(exc).__name__}: {details_of(exc)}"
            ) from None
        raise to_cairn_error(exc) from None
