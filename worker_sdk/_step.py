"""@step: a checkpointed call inside a task. Live, its body runs (with in-place
retries) and its result is recorded before it returns; on replay the recorded
result comes back without running the body."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar, overload

import grpc

from cairn import error_types, payloads
from cairn.backoff import backoff_seconds
from cairn.limits import MAX_NAME_CHARS, MAX_PAYLOAD_BYTES, MAX_TRY_ERRORS
from cairn.v1 import common_pb2, worker_service_pb2
from worker_sdk import _replay as replay
from worker_sdk._attempt import (
    AttemptContext,
    AttemptReleased,
    StepContext,
    current_attempt,
    current_step,
    enter_step,
    leave_step,
)
from worker_sdk._calls import FENCED, attempt_call
from worker_sdk._failures import error_info, one_line
from worker_sdk._policies import Retry
from worker_sdk._suspension import check_live, lookup
from worker_sdk._tracing import step_span
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError, StepFailedError, type_name

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("cairn.worker")


class OutputTooLargeError(ValueError):
    """A step's output is larger than MAX_PAYLOAD_BYTES as JSON: recorded as the
    step's non-retryable error of type cairn.OutputRefused (the server would
    refuse it on every try); the task sees StepFailedError."""


# A stale attempt, or a position another attempt already recorded.
_FENCED = FENCED | {grpc.StatusCode.ALREADY_EXISTS}


class _StepSpec:
    def __init__(self, fn: Callable[..., Awaitable[Any]], name: str, retry: Retry) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> Callable[P, Awaitable[R]]: ...


@overload
def step(
    *, name: str | None = None, retry: Retry | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


def step(
    fn: Callable[P, Awaitable[R]] | None = None, *, name: str | None = None, retry: Retry | None = None
) -> Callable[P, Awaitable[R]] | Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Declares an async function as a step, used as `@step` or
    `@step(name=..., retry=...)`. The name (default: the function's qualified name)
    is the step's identity in the journal; retry is applied in place, inside the
    attempt (default Retry(max_attempts=1): no in-place retry). Outside a running
    task, and inside another step's body, calling a step just runs the function."""
    if retry is not None and not isinstance(retry, Retry):
        raise ArgumentTypeError(f"@step: retry must be a Retry, got {retry!r}")
    if name is not None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"@step: name must be a non-empty string, got {name!r}")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidArgumentError(
                f"@step: name {name[:40]!r}... is longer than {MAX_NAME_CHARS} characters"
            )

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        step_name = name or getattr(fn, "__qualname__", None) or repr(fn)
        if not inspect.iscoroutinefunction(fn):
            raise ArgumentTypeError(f"step '{step_name}' must be an 'async def' function")
        spec = _StepSpec(fn, step_name, retry if retry is not None else Retry(max_attempts=1))

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
            # Not `async def`: the position is taken here, at call time, so steps
            # started together (asyncio.gather) get positions in call order.
            ctx = current_attempt()
            if ctx is None or current_step() is not None:
                return fn(*args, **kwargs)
            position = ctx.next_position
            ctx.next_position += 1
            return _run(ctx, spec, position, args, kwargs)

        call.step_name = step_name  # type: ignore[attr-defined]
        call.retry = spec.retry  # type: ignore[attr-defined]
        call.fn = fn  # type: ignore[attr-defined]
        if hasattr(inspect, "markcoroutinefunction"):
            inspect.markcoroutinefunction(call)
        return call

    if fn is not None:
        return decorate(fn)
    return decorate


def run_step(
    ctx: AttemptContext, position: int, name: str, body: Callable[[], Awaitable[Any]], retry: Retry
) -> Awaitable[Any]:
    """Runs body as the step `name` at position (taken by the caller): replayed
    from the journal when recorded, else run live and recorded. For the SDK's own
    steps (creating a wait token, triggering a child run)."""
    return _run(ctx, _StepSpec(body, name, retry), position, (), {})


async def record_step(ctx: AttemptContext, position: int, name: str, value: Any) -> None:
    """Records value as the completed step `name` at position, without a body."""
    data = payloads.encode_json(value)
    running = _running(ctx, position)
    try:
        await _record(
            ctx,
            worker_service_pb2.RecordStepRequest(
                namespace=ctx.namespace,
                run_id=ctx.run_id,
                attempt=ctx.attempt,
                attempt_token=ctx.attempt_token,
                position=position,
                name=name,
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=common_pb2.Payload(data=data, encoding=payloads.JSON),
                tries=1,
            ),
        )
    finally:
        _stopped(ctx, position, running)


def _running(ctx: AttemptContext, position: int) -> asyncio.Future[None]:
    """Marks position as a step of this attempt still running (or recording)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ctx.running[position] = done
    return done


def _stopped(ctx: AttemptContext, position: int, done: asyncio.Future[None]) -> None:
    """The step at position has recorded, or given up (failed to record, cancelled)."""
    if ctx.running.get(position) is done:
        del ctx.running[position]
    if not done.done():
        done.set_result(None)


async def _run(
    ctx: AttemptContext, spec: _StepSpec, position: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    recorded = lookup(ctx, position, spec.name)
    if recorded is not None:
        return replay.replay(recorded)
    if ctx.draining is not None and ctx.draining.started:
        ctx.released = ctx.released or f"stopped before step '{spec.name}' at position {position}"
        raise AttemptReleased(
            f"run {ctx.run_id} attempt {ctx.attempt}: the worker is shutting down; {ctx.released}"
        )
    token = enter_step(StepContext(spec.name, position, f"{ctx.run_id}:{position}"))
    running = _running(ctx, position)
    try:
        with step_span(ctx.run_id, ctx.attempt, spec.name, position):
            return await _run_live(ctx, spec, position, args, kwargs)
    finally:
        _stopped(ctx, position, running)
        leave_step(token)


async def _run_live(
    ctx: AttemptContext, spec: _StepSpec, position: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    settings = spec.retry.settings
    tries = 0
    # The errors of the failed tries retried in place: the latest MAX_TRY_ERRORS.
    try_errors: deque[common_pb2.ErrorInfo] = deque(maxlen=MAX_TRY_ERRORS)
    while True:
        tries += 1
        try:
            value = await spec.fn(*args, **kwargs)
        except Exception as exc:
            non_retryable = spec.retry.is_non_retryable(exc)
            if non_retryable or tries >= settings.max_attempts:
                return await _record_failure(ctx, spec, position, tries, exc, non_retryable, try_errors)
            try_errors.append(error_info(exc, False))
            delay = backoff_seconds(settings, tries)  # capped at max_timeout, never overflows
            ctx.logger.warning(
                "step '%s' (position %d) failed on try %d of %d: %s: %s; retrying in %.3fs",
                spec.name,
                position,
                tries,
                settings.max_attempts,
                type_name(type(exc)),
                one_line(str(exc)),
                delay,
            )
            await asyncio.sleep(delay)
            continue
        try:
            data = payloads.encode_json(value)
        except payloads.PayloadError as exc:
            type_error = TypeError(
                f"step '{spec.name}' returned a value that is not JSON-serialisable: {exc}"
            )
            return await _record_failure(ctx, spec, position, tries, type_error, True, try_errors)
        if len(data) > MAX_PAYLOAD_BYTES:
            # It can never be recorded: fail the step now, not the attempt thrice.
            too_big = OutputTooLargeError(
                f"step '{spec.name}' (position {position}) returned {len(data)} bytes of JSON, over "
                f"the limit of {MAX_PAYLOAD_BYTES} bytes for one output; store large data "
                "elsewhere and return a reference to it"
            )
            return await _record_failure(ctx, spec, position, tries, too_big, True, try_errors)
        await _record(
            ctx,
            worker_service_pb2.RecordStepRequest(
                namespace=ctx.namespace,
                run_id=ctx.run_id,
                attempt=ctx.attempt,
                attempt_token=ctx.attempt_token,
                position=position,
                name=spec.name,
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=common_pb2.Payload(data=data, encoding=payloads.JSON),
                tries=tries,
                try_errors=try_errors,
            ),
        )
        # The decoded record, not `value`: live and replay return the same thing.
        return payloads.decode(data, payloads.JSON)


async def _record_failure(
    ctx: AttemptContext,
    spec: _StepSpec,
    position: int,
    tries: int,
    exc: Exception,
    non_retryable: bool,
    try_errors: Iterable[common_pb2.ErrorInfo],
) -> Any:
    """Records the step as failed with exc (its last try) and the errors of the
    tries before it; raises StepFailedError."""
    info = error_info(exc, non_retryable)
    if isinstance(exc, OutputTooLargeError):
        info.type = error_types.OUTPUT_REFUSED
    await _record(
        ctx,
        worker_service_pb2.RecordStepRequest(
            namespace=ctx.namespace,
            run_id=ctx.run_id,
            attempt=ctx.attempt,
            attempt_token=ctx.attempt_token,
            position=position,
            name=spec.name,
            status=common_pb2.STEP_STATUS_FAILED,
            error=info,
            tries=tries,
            try_errors=try_errors,
        ),
    )
    raise StepFailedError(spec.name, info.type, info.message, non_retryable, info.stack_trace) from exc


async def _record(ctx: AttemptContext, request: worker_service_pb2.RecordStepRequest) -> None:
    """Records a step result. A refusal because the attempt is stale (or the position
    already recorded) abandons the attempt; so does a server unreachable for a whole
    lease, since by then the lease has expired and another attempt will run."""
    check_live(ctx)
    await attempt_call(
        ctx,
        ctx.stub.RecordStep,
        request,
        f"recording step '{request.name}' at position {request.position}",
        fenced=_FENCED,
    )
    ctx.recorded.add(request.position)
    status = "completed" if request.status == common_pb2.STEP_STATUS_COMPLETED else "failed"
    log.info(
        "step recorded: run=%s attempt=%d position=%d name=%s status=%s tries=%d",
        ctx.run_id,
        ctx.attempt,
        request.position,
        request.name,
        status,
        request.tries,
    )
