"""Calls an attempt makes to the server besides step records (suspending,
metadata, triggering children, creating tokens): retried while the server is
unreachable, for up to a lease, and fenced: a refusal that says the attempt is
no longer current abandons it, and why (the refusal's "cairn-attempt-gone"
trailing metadata) is kept on the attempt for its log lines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from worker_sdk._attempt import AttemptAbandoned, AttemptContext
from worker_sdk._grpc import (
    TRANSIENT_CODES,
    WRITE_TIMEOUT,
    attempt_gone_of,
    call_with_retry,
    code_of,
    details_of,
    to_cairn_error,
)

R = TypeVar("R")
FENCED = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})
# How long an attempt's write is sent again while the server cannot be reached,
# at least a lease: history fences every write, and after a whole-cluster
# restart it gives the leases that fell due while it was down a grace, so a
# write that reaches it late is still the attempt's.
UNREACHABLE_GIVE_UP_SECONDS = 60.0

# Why an attempt is gone, by the value of "cairn-attempt-gone" (cairn.v1.AttemptGone).
_GONE = {
    "canceled": "run {run_id} was canceled",
    "timed_out": "run {run_id} timed out (it ran past its max_duration)",
    "superseded": "attempt {attempt} was superseded (its lease expired; a newer attempt may run)",
    "ended": "attempt {attempt} has already ended",
}


def gone_reason(ctx: AttemptContext, exc: BaseException) -> str:
    """Why a refusal means the attempt is no longer current: read from its
    "cairn-attempt-gone" trailing metadata ("run R was canceled", "attempt N was
    superseded ..."), else its status code and message."""
    value = attempt_gone_of(exc)
    if value:
        template = _GONE.get(value)
        if template is None:
            return f"attempt {ctx.attempt} is no longer current ({value})"
        return template.format(run_id=ctx.run_id, attempt=ctx.attempt)
    code = code_of(exc)
    details = details_of(exc) if isinstance(exc, grpc.RpcError) else str(exc)
    return f"{code.name if code else type(exc).__name__}: {details}"


def abandon(ctx: AttemptContext, reason: str) -> None:
    """Marks the attempt abandoned, keeping the first reason given."""
    ctx.abandoned = True
    if ctx.gone is None:
        ctx.gone = reason


def is_gone(exc: BaseException, fenced: frozenset[grpc.StatusCode] = FENCED) -> bool:
    """True when a refusal says the attempt is no longer current: it names why
    ("cairn-attempt-gone"), or its code is one of `fenced`."""
    return attempt_gone_of(exc) is not None or code_of(exc) in fenced


async def attempt_call(
    ctx: AttemptContext,
    method: Callable[..., Awaitable[R]],
    request: Any,
    what: str,
    fenced: frozenset[grpc.StatusCode] = FENCED,
) -> R:
    """Calls method(request) for the attempt. A refusal naming why the attempt is
    gone, a code in `fenced`, or a server unreachable for
    UNREACHABLE_GIVE_UP_SECONDS or a lease, whichever is longer (by then another
    attempt may run), abandons the attempt (AttemptAbandoned); any other
    refusal raises the mapped CairnError. What the attempt logged or streamed
    before the call is sent first."""
    ctx.output.flush()
    try:
        give_up = max(ctx.lease_seconds, UNREACHABLE_GIVE_UP_SECONDS)
        return await call_with_retry(method, request, timeout=WRITE_TIMEOUT, give_up_after=give_up)
    except grpc.RpcError as exc:
        code = code_of(exc)
        if is_gone(exc, fenced):
            reason = gone_reason(ctx, exc)
        elif code in TRANSIENT_CODES:
            reason = (
                f"the server was unreachable for {max(ctx.lease_seconds, UNREACHABLE_GIVE_UP_SECONDS):g} s "
                f"({code.name if code else '?'}: "
                f"{details_of(exc)}); another attempt may run"
            )
        else:
            raise to_cairn_error(exc) from None
        raise abandoned(ctx, what, reason) from None


def abandoned(ctx: AttemptContext, what: str, reason: str) -> AttemptAbandoned:
    """Marks the attempt abandoned and returns the exception that stops it:
    `what` (a call of the attempt) failed for `reason`."""
    abandon(ctx, reason)
    return AttemptAbandoned(f"run {ctx.run_id} attempt {ctx.attempt}: {what} failed: {reason}")
