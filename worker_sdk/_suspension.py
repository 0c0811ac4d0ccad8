"""What every durable wait shares: taking its step position, finding its result
in the journal, and suspending the attempt with FinishAttempt(SUSPENDED) when
the result is not there yet. A suspension ends the attempt, and history refuses
one with an unrecorded position below its wait, so the attempt's steps still
running below the wait finish and record first."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from cairn import error_types
from cairn.v1 import common_pb2, worker_service_pb2
from worker_sdk import _replay as replay
from worker_sdk._attempt import (
    AttemptAbandoned,
    AttemptContext,
    AttemptSuspended,
    current_attempt,
    current_step,
)
from worker_sdk._calls import attempt_call
from worker_sdk.errors import (
    CairnError,
    ConcurrentWaitError,
    NonDeterminismError,
    OutsideTaskError,
    WaitTimeoutError,
)


def begin(what: str) -> tuple[AttemptContext, int]:
    """The running attempt and the next step position, taken now (at call time,
    like a step), so waits started together get positions in call order. Raises
    OutsideTaskError outside a task and inside a step body."""
    ctx = current_attempt()
    if ctx is None:
        raise OutsideTaskError(f"{what} is only available while a task runs (inside a @task function)")
    if current_step() is not None:
        raise OutsideTaskError(f"{what} cannot be used inside a @step body; call it from the task function")
    position = ctx.next_position
    ctx.next_position += 1
    return ctx, position


def check_live(ctx: AttemptContext) -> None:
    """Raises when the attempt must do nothing more: superseded or already suspended."""
    if ctx.abandoned:
        raise AttemptAbandoned(
            f"run {ctx.run_id} attempt {ctx.attempt} is abandoned: {ctx.gone or 'superseded'}"
        )
    if ctx.suspended is not None:
        raise AttemptSuspended(f"run {ctx.run_id} attempt {ctx.attempt} is suspended ({ctx.suspended})")


def lookup(ctx: AttemptContext, position: int, name: str) -> common_pb2.Step | None:
    """The journal record at position, or None. A record of another name is
    non-determinism: remembered on the attempt (it fails the run even if caught)
    and raised."""
    check_live(ctx)
    try:
        return replay.recorded_step(ctx.journal, ctx.run_id, position, name)
    except NonDeterminismError as err:
        ctx.nondeterminism = ctx.nondeterminism or err
        raise


def resolved(recorded: common_pb2.Step) -> Any:
    """A resolved wait's result: the recorded payload, WaitTimeoutError when it
    timed out, or the recorded failure as StepFailedError."""
    if recorded.status == common_pb2.STEP_STATUS_FAILED and recorded.error.type == error_types.WAIT_TIMEOUT:
        raise WaitTimeoutError(
            recorded.error.message or f"{recorded.name} at position {recorded.position} timed out"
        )
    return replay.replay(recorded)


def request(ctx: AttemptContext) -> worker_service_pb2.FinishAttemptRequest:
    """A FinishAttempt(SUSPENDED) request for the attempt, to fill with its wait."""
    return worker_service_pb2.FinishAttemptRequest(
        namespace=ctx.namespace,
        run_id=ctx.run_id,
        attempt=ctx.attempt,
        attempt_token=ctx.attempt_token,
        outcome=worker_service_pb2.ATTEMPT_OUTCOME_SUSPENDED,
    )


async def suspend(
    ctx: AttemptContext, finish: worker_service_pb2.FinishAttemptRequest, description: str
) -> NoReturn:
    """Ends the attempt as suspended on one wait (finish.wait). First the
    attempt's steps still running at positions below the wait finish and record.
    Accepted: raises AttemptSuspended, and the attempt sends nothing more. Refused
    as stale: AttemptAbandoned. Refused otherwise (e.g. INVALID_ARGUMENT): the
    mapped CairnError, and the attempt goes on. Another wait already suspending
    the attempt: ConcurrentWaitError for both. A position below the wait that
    nothing will record (a step never awaited, an earlier wait that was refused):
    CairnError naming it, since history would refuse the suspension."""
    check_live(ctx)
    if ctx.nondeterminism is not None:
        raise ctx.nondeterminism  # results after a mismatch cannot be trusted
    if ctx.suspend_claim is not None:
        ctx.suspend_conflict = True
        raise _conflict(description, ctx.suspend_claim)
    ctx.suspend_claim = description
    send: asyncio.Future[Any] | None = None
    try:
        # One turn of the loop lets waits started together (asyncio.gather) meet
        # here, so that they all fail instead of one suspending at random.
        await asyncio.sleep(0)
        if ctx.suspend_conflict:
            raise _conflict(description, None)
        position = finish.wait.position
        await _lower_steps_recorded(ctx, position)
        if ctx.suspend_conflict:
            raise _conflict(description, None)
        check_live(ctx)
        _check_no_gap(ctx, position, description)
        send = asyncio.ensure_future(_send(ctx, finish, description))
        ctx.suspension = send
        send.add_done_callback(lambda _: _release(ctx))
        # Shielded: cancelling the waiting code must not leave the server's answer unknown.
        await asyncio.shield(send)
    finally:
        if send is None:
            _release(ctx)
    raise AttemptSuspended(f"run {ctx.run_id} attempt {ctx.attempt} suspended: {description}")


async def _send(
    ctx: AttemptContext, finish: worker_service_pb2.FinishAttemptRequest, description: str
) -> None:
    await attempt_call(ctx, ctx.stub.FinishAttempt, finish, f"suspending on {description}")
    ctx.suspended = description
    ctx.suspend_request = finish


async def _lower_steps_recorded(ctx: AttemptContext, position: int) -> None:
    """Waits until no step of the attempt below position is running."""
    while True:
        lower = [done for p, done in ctx.running.items() if p < position]
        if not lower:
            return
        await asyncio.wait(lower)


def _check_no_gap(ctx: AttemptContext, position: int, description: str) -> None:
    """Raises CairnError when a position below the wait is recorded neither in
    the journal nor by this attempt."""
    for p in range(position):
        if p not in ctx.journal and p not in ctx.recorded:
            raise CairnError(
                f"cannot suspend on {description}: position {p} below it is not recorded (a step "
                "called but never awaited, or a wait that did not suspend); an attempt suspends "
                "only when everything it started before the wait has finished"
            )


def _release(ctx: AttemptContext) -> None:
    if ctx.suspended is None:
        ctx.suspend_claim = None
        ctx.suspend_conflict = False


def _conflict(description: str, other: str | None) -> ConcurrentWaitError:
    also = f" while {other} was suspending it" if other else " together with another wait"
    return ConcurrentWaitError(
        f"{description} was started{also}: an attempt suspends on one wait at a time. "
        "Await waits one after the other; to wait for several child runs at once use "
        "Task.batch_trigger_and_wait"
    )


async def settle(ctx: AttemptContext) -> None:
    """Waits for a suspension still in flight (its waiting code may have been
    cancelled or abandoned by asyncio.gather), so the attempt knows whether it
    ended suspended."""
    send = ctx.suspension
    if send is None:
        return
    if not send.done():
        await asyncio.wait({send})
    if not send.cancelled():
        send.exception()  # retrieved here; the waiting code may never retrieve it
