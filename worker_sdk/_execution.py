"""Runs one attempt on a worker: replays and runs the task function, keeps the
lease alive, and reports how the attempt ended unless it was superseded."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from cairn import error_types, payloads
from cairn.statuses import ATTEMPT_OUTCOME_NAMES, RUN_STATUS_NAMES
from cairn.v1 import common_pb2, worker_service_pb2
from worker_sdk import _replay as replay
from worker_sdk import _suspension as suspension
from worker_sdk._attempt import AttemptAbandoned, AttemptContext, AttemptSuspended, Draining, enter_attempt
from worker_sdk._calls import UNREACHABLE_GIVE_UP_SECONDS, abandon, gone_reason, is_gone
from worker_sdk._convert import struct_to_dict
from worker_sdk._failures import error_info, one_line, task_error_info
from worker_sdk._grpc import (
    TRANSIENT_CODES,
    WRITE_TIMEOUT,
    attempt_gone_of,
    call_with_retry,
    code_of,
    details_of,
    jittered,
    retry_delay_of,
)
from worker_sdk._release import release, settle_running
from worker_sdk._task import Task
from worker_sdk._tracing import AttemptSpan
from worker_sdk.errors import type_name

DEFAULT_LEASE = 30.0
log = logging.getLogger("cairn.worker")


def _failed(
    assignment: worker_service_pb2.AttemptAssignment, namespace: str, error: common_pb2.ErrorInfo
) -> worker_service_pb2.FinishAttemptRequest:
    return worker_service_pb2.FinishAttemptRequest(
        namespace=namespace,
        run_id=assignment.run_id,
        attempt=assignment.attempt,
        attempt_token=assignment.attempt_token,
        outcome=worker_service_pb2.ATTEMPT_OUTCOME_FAILED,
        error=error,
    )


def lease_seconds(assignment: worker_service_pb2.AttemptAssignment) -> float:
    if assignment.HasField("lease_duration"):
        seconds = assignment.lease_duration.ToTimedelta().total_seconds()
        if seconds > 0:
            return seconds
    return DEFAULT_LEASE


async def execute_attempt(
    stub: Any,
    namespace: str,
    task: Task[Any, Any] | None,
    assignment: worker_service_pb2.AttemptAssignment,
    *,
    run_stub: Any = None,
    wait_stub: Any = None,
    draining: Draining | None = None,
) -> worker_service_pb2.FinishAttemptRequest | None:
    """Runs one assigned attempt to its end and reports it with FinishAttempt.
    Returns the request sent (for a suspended attempt, the suspension the task's
    wait sent), or None when the attempt was superseded (canceled, or its lease
    lost) and so nothing was reported. `stub` is a WorkerService stub or an object
    with the same async methods; run_stub and wait_stub (RunService and
    WaitService, for child runs and wait tokens) default to it. Cancelling this
    coroutine cancels the task function and reports nothing: the lease expires
    and the server retries the run.

    draining: the worker's shutdown. Once it started, an attempt handed over is
    handed back unstarted, and a running one stops at its next live step, lets
    its running steps record, and is handed back (FinishAttempt RELEASED, see
    _release.py); when its `now` is set (the grace is over) the task function is
    cancelled and the attempt handed back at once."""
    lease = lease_seconds(assignment)
    ctx = AttemptContext(
        namespace=namespace,
        run_id=assignment.run_id,
        attempt=assignment.attempt,
        task_id=assignment.task_id,
        journal=replay.build_journal(assignment.steps),
        stub=stub,
        lease_seconds=lease,
        run_stub=run_stub,
        wait_stub=wait_stub,
        metadata=struct_to_dict(assignment.metadata) if assignment.HasField("metadata") else {},
        parent_run_id=assignment.parent_run_id,
        attempt_token=assignment.attempt_token,
        draining=draining,
    )
    started = time.monotonic()
    if draining is not None and draining.started:
        return await release(ctx, started, "handed over as the worker began to stop; not started")
    log.info(
        "attempt started: run=%s attempt=%d task=%s recorded_steps=%d",
        ctx.run_id,
        ctx.attempt,
        ctx.task_id,
        len(ctx.journal),
    )
    span = AttemptSpan(assignment)  # current in the task function's task (OpenTelemetry, optional)
    fn_task = asyncio.create_task(
        _invoke(ctx, task, assignment),
        name=f"cairn-run-{ctx.run_id}-attempt-{ctx.attempt}",
        context=span.context(),
    )
    heartbeat = asyncio.create_task(_heartbeat(ctx, fn_task, lease / 3))
    try:
        try:
            await _until_done(fn_task, draining)
        except asyncio.CancelledError:
            await _cancel(fn_task)
            raise
        if not fn_task.done():  # the worker's grace is over
            ctx.released = ctx.released or "still running when the grace period ended"
            await _cancel(fn_task)
        await suspension.settle(ctx)
        if ctx.suspended is not None:
            _log_suspended(ctx, fn_task, started)
            return ctx.suspend_request
        if ctx.released is not None and not ctx.abandoned and draining is not None:
            if fn_task.done() and not fn_task.cancelled() and fn_task.exception() is None:
                log.warning(
                    "task code caught the stop of its attempt and returned; its result is ignored and "
                    "the attempt handed back: run=%s attempt=%d",
                    ctx.run_id,
                    ctx.attempt,
                )  # (fn_task.exception() retrieved it: asyncio does not log it as lost)
            await settle_running(ctx, draining)
            return await release(ctx, started, ctx.released)
        request = _finish_request(ctx, task, fn_task)
        if request is None:
            log.warning(
                "attempt superseded: run=%s attempt=%d task=%s (%s); its result is discarded",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                ctx.gone or "no longer the run's current attempt",
            )
            return None
        if not await _finish(ctx, request, started):
            return None
        return request
    finally:
        heartbeat.cancel()
        span.end(ctx.suspended is not None, fn_task)


async def _until_done(fn_task: asyncio.Task[Any], draining: Draining | None) -> None:
    """Until the task function is done, or the worker's grace is over."""
    if draining is None:
        await asyncio.wait({fn_task})
        return
    now = asyncio.ensure_future(draining.now.wait())
    try:
        await asyncio.wait({fn_task, now}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        now.cancel()


async def _cancel(fn_task: asyncio.Task[Any]) -> None:
    """Cancels the task function and waits a moment for it to end."""
    fn_task.cancel()
    await asyncio.wait({fn_task}, timeout=1.0)
    if fn_task.done() and not fn_task.cancelled():
        fn_task.exception()  # retrieved, so asyncio does not log it as lost


def _log_suspended(ctx: AttemptContext, fn_task: asyncio.Task[Any], started: float) -> None:
    """The attempt ended on a wait the server accepted: it sends nothing more."""
    exc = None if fn_task.cancelled() else fn_task.exception()
    if exc is not None and not isinstance(exc, AttemptSuspended):
        log.warning(
            "task code went on after the attempt suspended and ended with %s: %s; ignored: run=%s attempt=%d",
            type_name(type(exc)),
            one_line(str(exc)),
            ctx.run_id,
            ctx.attempt,
        )
    elif exc is None and not fn_task.cancelled():
        log.warning(
            "task code caught the suspension of its attempt and returned; its result "
            "is ignored: run=%s attempt=%d",
            ctx.run_id,
            ctx.attempt,
        )
    log.info(
        "attempt suspended: run=%s attempt=%d task=%s wait=%s duration=%.3fs",
        ctx.run_id,
        ctx.attempt,
        ctx.task_id,
        ctx.suspended,
        time.monotonic() - started,
    )


async def _invoke(
    ctx: AttemptContext, task: Task[Any, Any] | None, assignment: worker_service_pb2.AttemptAssignment
) -> worker_service_pb2.FinishAttemptRequest:
    """Runs the task function under the attempt's context and turns its result or
    error into the FinishAttempt request."""
    enter_attempt(ctx)  # this coroutine runs in its own task, hence its own context
    if task is None:
        return _failed(
            assignment,
            ctx.namespace,
            common_pb2.ErrorInfo(
                type=error_types.UNKNOWN_TASK,
                message=f"this worker does not serve task '{assignment.task_id}'",
            ),
        )
    try:
        payload = payloads.decode(assignment.payload.data, assignment.payload.encoding)
    except payloads.PayloadError as exc:
        return _failed(
            assignment,
            ctx.namespace,
            common_pb2.ErrorInfo(
                type=error_types.INVALID_PAYLOAD,
                message=f"payload of run {ctx.run_id} for task '{task.id}' cannot be decoded: {exc}",
                non_retryable=True,
            ),
        )
    try:
        value = await task.fn(payload)
    except Exception as exc:
        return _failed(assignment, ctx.namespace, task_error_info(task.retry, exc))
    try:
        data = payloads.encode_json(value)
    except payloads.PayloadError as exc:
        return _failed(
            assignment,
            ctx.namespace,
            common_pb2.ErrorInfo(
                type="TypeError",
                message=f"task '{task.id}' returned a value that is not JSON-serialisable: {exc}",
                non_retryable=True,
            ),
        )
    return worker_service_pb2.FinishAttemptRequest(
        namespace=ctx.namespace,
        run_id=ctx.run_id,
        attempt=ctx.attempt,
        attempt_token=ctx.attempt_token,
        outcome=worker_service_pb2.ATTEMPT_OUTCOME_COMPLETED,
        output=common_pb2.Payload(data=data, encoding=payloads.JSON),
    )


def _finish_request(
    ctx: AttemptContext, task: Task[Any, Any] | None, fn_task: asyncio.Task[Any]
) -> worker_service_pb2.FinishAttemptRequest | None:
    """The report for a finished task function, or None when it must not be sent."""
    if fn_task.cancelled():
        exc: BaseException | None = asyncio.CancelledError("the task function was cancelled by its own code")
    else:
        exc = fn_task.exception()
    if isinstance(exc, AttemptAbandoned):
        abandon(ctx, str(exc))
        log.warning("attempt abandoned: %s", exc)
    if ctx.abandoned:
        return None
    base = worker_service_pb2.FinishAttemptRequest(
        namespace=ctx.namespace, run_id=ctx.run_id, attempt=ctx.attempt, attempt_token=ctx.attempt_token
    )
    if ctx.nondeterminism is not None:
        # Even if task code caught it: results after a mismatch cannot be trusted.
        err = ctx.nondeterminism
        base.outcome = worker_service_pb2.ATTEMPT_OUTCOME_FAILED
        base.error.CopyFrom(error_info(err, True))
        return base
    if exc is not None:
        base.outcome = worker_service_pb2.ATTEMPT_OUTCOME_FAILED
        base.error.CopyFrom(task_error_info(task.retry, exc) if task is not None else error_info(exc, False))
        return base
    result: worker_service_pb2.FinishAttemptRequest = fn_task.result()
    return result


async def _finish(
    ctx: AttemptContext, request: worker_service_pb2.FinishAttemptRequest, started: float
) -> bool:
    """Sends FinishAttempt. A refusal (the attempt is stale) or a server unreachable
    for as long as an attempt's writes are sent again (_calls) is logged, not raised. A completed output the server refuses
    as invalid is reported instead as a non-retryable failure. True when acknowledged."""
    outcome = ATTEMPT_OUTCOME_NAMES.get(request.outcome, str(request.outcome))
    ctx.output.flush()  # what the attempt logged goes before its end
    try:
        response = await call_with_retry(
            ctx.stub.FinishAttempt,
            request,
            timeout=WRITE_TIMEOUT,
            give_up_after=max(ctx.lease_seconds, UNREACHABLE_GIVE_UP_SECONDS),
        )
    except grpc.RpcError as exc:
        code = code_of(exc)
        details = details_of(exc)
        if attempt_gone_of(exc) == "ended":
            # Only this worker ends its attempt: a finish sent again after
            # UNAVAILABLE (by this SDK or by the frontend) whose first sending landed.
            log.info(
                "attempt finished: run=%s attempt=%d task=%s outcome=%s (its FinishAttempt had "
                "landed before its answer was lost) duration=%.3fs",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                outcome,
                time.monotonic() - started,
            )
            return True
        if is_gone(exc):
            abandon(ctx, gone_reason(ctx, exc))
            log.warning(
                "attempt superseded: run=%s attempt=%d task=%s; the server refused its finish: %s",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                ctx.gone,
            )
        elif code in TRANSIENT_CODES:
            log.warning(
                "attempt abandoned: run=%s attempt=%d task=%s; could not report "
                "outcome %s within the lease (%s: %s); the server will retry the run",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                outcome,
                code.name,
                details,
            )
        elif (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and request.outcome == worker_service_pb2.ATTEMPT_OUTCOME_COMPLETED
        ):
            log.error(
                "attempt output refused: run=%s attempt=%d task=%s (%s); reporting it as failed",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                details,
            )
            failed = _failed(
                worker_service_pb2.AttemptAssignment(
                    run_id=ctx.run_id, attempt=ctx.attempt, attempt_token=ctx.attempt_token
                ),
                ctx.namespace,
                common_pb2.ErrorInfo(
                    type=error_types.OUTPUT_REFUSED,
                    message=f"the server refused the output of task '{ctx.task_id}': {details}",
                    non_retryable=True,
                ),
            )
            return await _finish(ctx, failed, started)
        else:
            log.error(
                "attempt finish failed: run=%s attempt=%d task=%s outcome=%s (%s: %s)",
                ctx.run_id,
                ctx.attempt,
                ctx.task_id,
                outcome,
                code.name if code else type(exc).__name__,
                details,
            )
        return False
    run_status = RUN_STATUS_NAMES.get(getattr(response, "run_status", 0), "")
    error = ""
    if request.outcome == worker_service_pb2.ATTEMPT_OUTCOME_FAILED:
        error = f" error={request.error.type}: {one_line(request.error.message)}"
    log.info(
        "attempt finished: run=%s attempt=%d task=%s outcome=%s run_status=%s duration=%.3fs%s",
        ctx.run_id,
        ctx.attempt,
        ctx.task_id,
        outcome,
        run_status or "?",
        time.monotonic() - started,
        error,
    )
    return True


async def _heartbeat(ctx: AttemptContext, fn_task: asyncio.Task[Any], interval: float) -> None:
    """Extends the lease every interval. When the server says the attempt is no
    longer current, marks it abandoned and cancels the task function. A
    heartbeat refused by a limit of the API key is sent again after the delay
    the refusal names (when that is sooner than the next one)."""
    request = worker_service_pb2.HeartbeatRequest(
        namespace=ctx.namespace, run_id=ctx.run_id, attempt=ctx.attempt, attempt_token=ctx.attempt_token
    )
    pause = interval
    while True:
        await asyncio.sleep(pause)
        pause = interval
        if ctx.suspended is not None:
            return  # the attempt is over; the run holds no lease while it waits
        try:
            await ctx.stub.Heartbeat(request, timeout=interval)
        except grpc.RpcError as exc:
            code = code_of(exc)
            if is_gone(exc):
                abandon(ctx, gone_reason(ctx, exc))
                log.warning(
                    "attempt superseded: run=%s attempt=%d task=%s; heartbeat refused: %s; stopping it",
                    ctx.run_id,
                    ctx.attempt,
                    ctx.task_id,
                    ctx.gone,
                )
                fn_task.cancel()
                return
            log.warning(
                "heartbeat failed: run=%s attempt=%d (%s: %s); will retry",
                ctx.run_id,
                ctx.attempt,
                code.name if code else type(exc).__name__,
                details_of(exc),
            )
            if (limited := retry_delay_of(exc)) is not None:
                pause = min(interval, jittered(limited))
