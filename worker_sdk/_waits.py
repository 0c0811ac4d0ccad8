"""Durable waits, used as `from worker_sdk import wait`: sleeping (wait.for_,
wait.until), waiting for an event (wait.for_event) and for a wait token
(wait.create_token, wait.for_token). Each takes the next step position when it
is called, like a step, and is identified in the journal by (position, name).
A wait whose result is not recorded yet suspends the attempt: the worker slot is
freed, and once the server resolves the wait the run resumes in a new attempt
that replays to the same point and gets the result."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from cairn.limits import MAX_NAME_CHARS
from cairn.v1 import wait_service_pb2, worker_service_pb2
from worker_sdk import _suspension as suspension
from worker_sdk import _validate
from worker_sdk._attempt import AttemptContext
from worker_sdk._calls import attempt_call
from worker_sdk._policies import Retry
from worker_sdk._requests import iso_utc, parse_iso, to_duration, to_timestamp, utc_now
from worker_sdk._step import record_step, run_step
from worker_sdk._types import WaitToken
from worker_sdk.errors import ArgumentTypeError, CairnError, InvalidArgumentError

SLEEP = "wait.sleep"
FOR_EVENT = "wait.for_event"
CREATE_TOKEN = "wait.create_token"
FOR_TOKEN = "wait.for_token"
DEFAULT_INLINE_WAIT_SECONDS = 5.0
# The token step's RPC errors are final: a replay would raise them again anyway.
_TOKEN_STEP_RETRY = Retry(max_attempts=1, non_retryable=(CairnError,))


def inline_wait_seconds() -> float:
    """Sleeps with at most this much left run in place instead of suspending
    ($CAIRN_INLINE_WAIT_SECONDS, default 5)."""
    raw = os.environ.get("CAIRN_INLINE_WAIT_SECONDS")
    if not raw:
        return DEFAULT_INLINE_WAIT_SECONDS
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise InvalidArgumentError(
            f"CAIRN_INLINE_WAIT_SECONDS must be a number of seconds, got {raw!r}"
        ) from None


def _timeout_at(timeout: timedelta | float | None, what: str) -> datetime | None:
    if timeout is None:
        return None
    return utc_now() + timedelta(seconds=_validate.duration_seconds(f"{what}: timeout", timeout))


def for_(duration: timedelta | float) -> Awaitable[None]:
    """Sleeps for a timedelta or a number of seconds, durably. A long sleep
    suspends the run on a sleep wait at its position; history records the wait's
    step (its time, an RFC 3339 string) when the time comes, and a replay passes
    it. A short one (at most $CAIRN_INLINE_WAIT_SECONDS) records that same step
    at once and sleeps in place: a crash meanwhile does not restart its clock."""
    seconds = _validate.duration_seconds("wait.for_: duration", duration)
    ctx, position = suspension.begin("wait.for_")
    return _sleep(ctx, position, timedelta(seconds=seconds))


def until(when: datetime) -> Awaitable[None]:
    """Sleeps until an aware datetime, durably (see wait.for_)."""
    if not isinstance(when, datetime):
        raise ArgumentTypeError(f"wait.until: expected a datetime, got {when!r}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidArgumentError(
            "wait.until: the datetime must be timezone-aware, e.g. datetime(..., tzinfo=timezone.utc)"
        )
    ctx, position = suspension.begin("wait.until")
    return _sleep(ctx, position, when)


def _rfc3339(when: datetime) -> str:
    """A sleep step's output as history records it: UTC to the millisecond,
    e.g. "2026-12-04T20:00:00.000Z"."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _recorded_until(value: Any) -> datetime | None:
    """The time a recorded sleep step carries (an RFC 3339 string), or None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


async def _sleep_until(wake: datetime) -> None:
    remaining = (wake - utc_now()).total_seconds()
    if remaining > 0:
        await asyncio.sleep(remaining)


async def _sleep(ctx: AttemptContext, position: int, target: timedelta | datetime) -> None:
    recorded = suspension.lookup(ctx, position, SLEEP)
    if recorded is not None:
        # Resolved: by history when its time came, or recorded by a worker that
        # slept in place and may have stopped before the time (then the rest is
        # slept here; it was short).
        wake = _recorded_until(suspension.resolved(recorded))
        if wake is not None:
            await _sleep_until(wake)
        return None
    wake = utc_now() + target if isinstance(target, timedelta) else target
    if (wake - utc_now()).total_seconds() <= inline_wait_seconds():
        # The wait's own step, as history would record it, then the sleep in place.
        await record_step(ctx, position, SLEEP, _rfc3339(wake))
        await _sleep_until(wake)
        return None
    finish = suspension.request(ctx)
    finish.wait.CopyFrom(
        worker_service_pb2.WaitSpec(
            position=position,
            name=SLEEP,
            sleep=worker_service_pb2.SleepWait(until=to_timestamp(wake)),
        )
    )
    await suspension.suspend(ctx, finish, f"sleep until {iso_utc(wake)} (position {position})")


def for_event(name: str, key: str | None = None, timeout: timedelta | float | None = None) -> Awaitable[Any]:
    """Waits for an event named `name` (and, when given, with this key) sent to
    this run or by name and key (Client.send_event, `cairn events send`), and
    returns its payload. With timeout, raises WaitTimeoutError when it passes first."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"wait.for_event: name must be a non-empty string, got {name!r}")
    _validate.text("wait.for_event: name", name, MAX_NAME_CHARS)
    if key is not None and not isinstance(key, str):
        raise ArgumentTypeError(f"wait.for_event: key must be a string or None, got {key!r}")
    if key is not None:
        _validate.text("wait.for_event: key", key, MAX_NAME_CHARS)
    if timeout is not None:
        _validate.duration_seconds("wait.for_event: timeout", timeout)
    ctx, position = suspension.begin("wait.for_event")
    return _for_event(ctx, position, name, key or "", timeout)


async def _for_event(
    ctx: AttemptContext, position: int, name: str, key: str, timeout: timedelta | float | None
) -> Any:
    recorded = suspension.lookup(ctx, position, FOR_EVENT)
    if recorded is not None:
        return suspension.resolved(recorded)
    finish = suspension.request(ctx)
    finish.wait.CopyFrom(
        worker_service_pb2.WaitSpec(
            position=position, name=FOR_EVENT, event=worker_service_pb2.EventWait(name=name, key=key)
        )
    )
    timeout_at = _timeout_at(timeout, "wait.for_event")
    if timeout_at is not None:
        finish.wait.timeout_at.CopyFrom(to_timestamp(timeout_at))
    keyed = f" key {key!r}" if key else ""
    await suspension.suspend(ctx, finish, f"event {name!r}{keyed} (position {position})")


def create_token(timeout: timedelta | float | None = None) -> Awaitable[WaitToken]:
    """Creates a wait token, as a step (a replay returns the same token). Hand its
    id to whoever will complete it, then `await wait.for_token(token)`. With
    timeout, the token times out that long after creation."""
    seconds = (
        None
        if timeout is None
        else _validate.duration_seconds("wait.create_token: timeout", timeout, allow_zero=False)
    )
    ctx, position = suspension.begin("wait.create_token")
    return _create_token(ctx, position, seconds)


async def _create_token(ctx: AttemptContext, position: int, seconds: float | None) -> WaitToken:
    async def body() -> dict[str, Any]:
        request = wait_service_pb2.CreateWaitTokenRequest(
            namespace=ctx.namespace, run_id=ctx.run_id, idempotency_key=f"{ctx.run_id}:{position}"
        )
        if seconds is not None:
            request.timeout.CopyFrom(to_duration(seconds))
        response = await attempt_call(
            ctx, ctx.wait_stub.CreateWaitToken, request, "creating a wait token", fenced=frozenset()
        )
        token = response.token
        timeout_at = (
            iso_utc(token.timeout_at.ToDatetime(tzinfo=UTC)) if token.HasField("timeout_at") else None
        )
        return {"id": token.id, "timeout_at": timeout_at}

    value = await run_step(ctx, position, CREATE_TOKEN, body, _TOKEN_STEP_RETRY)
    timeout_at = value.get("timeout_at")
    return WaitToken(id=value["id"], timeout_at=parse_iso(timeout_at) if timeout_at else None)


def for_token(token: WaitToken | str, timeout: timedelta | float | None = None) -> Awaitable[Any]:
    """Waits until the token is completed and returns the payload it was completed
    with. Raises WaitTimeoutError when the token times out, or this wait's own
    timeout passes, first."""
    token_id = token.id if isinstance(token, WaitToken) else token
    if not isinstance(token_id, str) or not token_id:
        raise InvalidArgumentError(f"wait.for_token: expected a WaitToken or a token id, got {token!r}")
    if timeout is not None:
        _validate.duration_seconds("wait.for_token: timeout", timeout)
    ctx, position = suspension.begin("wait.for_token")
    return _for_token(ctx, position, token_id, timeout)


async def _for_token(
    ctx: AttemptContext, position: int, token_id: str, timeout: timedelta | float | None
) -> Any:
    recorded = suspension.lookup(ctx, position, FOR_TOKEN)
    if recorded is not None:
        return suspension.resolved(recorded)
    finish = suspension.request(ctx)
    finish.wait.CopyFrom(
        worker_service_pb2.WaitSpec(
            position=position, name=FOR_TOKEN, token=worker_service_pb2.TokenWait(token_id=token_id)
        )
    )
    timeout_at = _timeout_at(timeout, "wait.for_token")
    if timeout_at is not None:
        finish.wait.timeout_at.CopyFrom(to_timestamp(timeout_at))
    await suspension.suspend(ctx, finish, f"token {token_id} (position {position})")


class Wait:
    """The durable waits: wait.for_(duration), wait.until(datetime),
    wait.for_event(name, key=None, timeout=None), wait.create_token(timeout=None)
    and wait.for_token(token, timeout=None). Each must be awaited inside a task
    function (not inside a step body)."""

    for_ = staticmethod(for_)
    until = staticmethod(until)
    for_event = staticmethod(for_event)
    create_token = staticmethod(create_token)
    for_token = staticmethod(for_token)

    def __repr__(self) -> str:
        return "<cairn durable waits: for_, until, for_event, create_token, for_token>"


wait = Wait()
