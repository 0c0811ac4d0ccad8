"""Handing an attempt back as its worker shuts down (FinishAttempt RELEASED):
the run is queued again at once for another worker, which replays the steps
recorded so far and goes on, instead of waiting for this attempt's lease to
expire. No retry is used up."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from cairn.v1 import worker_service_pb2
from worker_sdk._attempt import AttemptContext, Draining
from worker_sdk._calls import gone_reason, is_gone
from worker_sdk._grpc import WRITE_TIMEOUT, attempt_gone_of, call_with_retry, code_of, details_of

# How long a release is sent again while the server is unreachable: the worker
# is stopping, and an attempt it could not hand back is retried after its lease.
RELEASE_SECONDS = 5.0
log = logging.getLogger("cairn.worker")


async def settle_running(ctx: AttemptContext, draining: Draining) -> None:
    """Waits until the attempt's steps still running have recorded (or given
    up), or until the grace is over (draining.now): what they record is kept."""
    now: asyncio.Future[Any] = asyncio.ensure_future(draining.now.wait())
    try:
        while ctx.running and not now.done():
            waiting: set[asyncio.Future[Any]] = {*ctx.running.values(), now}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        now.cancel()


async def release(
    ctx: AttemptContext, started: float, why: str
) -> worker_service_pb2.FinishAttemptRequest | None:
    """Sends FinishAttempt RELEASED for the attempt (what it logged first).
    Returns the request once the server took it (or had: "ended" after a lost
    answer), else None: the attempt was gone already, or the server could not
    be reached within RELEASE_SECONDS (its lease then expires as after a crash)."""
    request = worker_service_pb2.FinishAttemptRequest(
        namespace=ctx.namespace,
        run_id=ctx.run_id,
        attempt=ctx.attempt,
        attempt_token=ctx.attempt_token,
        outcome=worker_service_pb2.ATTEMPT_OUTCOME_RELEASED,
    )
    ctx.output.flush()
    try:
        await call_with_retry(
            ctx.stub.FinishAttempt,
            request,
            timeout=WRITE_TIMEOUT,
            give_up_after=min(RELEASE_SECONDS, ctx.lease_seconds),
        )
    except grpc.RpcError as exc:
        if attempt_gone_of(exc) != "ended":
            code = code_of(exc)
            if is_gone(exc):
                what = f"nothing to hand back: {gone_reason(ctx, exc)}"
            else:
                what = (
                    f"could not hand it back ({code.name if code else '?'}: {details_of(exc)}); "
                    "it runs again once its lease expires"
                )
            log.warning(
                "attempt not released: run=%s attempt=%d task=%s; %s",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                what,
            )
            return None
    log.info(
        "attempt released: run=%s attempt=%d task=%s (%s; the worker is shutting down) duration=%.3fs",
        ctx.run_id,
        ctx.attempt,
        ctx.task_id,
        why,
        time.monotonic() - started,
    )
    return request
