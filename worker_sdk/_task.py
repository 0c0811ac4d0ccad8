"""@task: declares an async function as a durable task a worker serves. A Task is
generic in its payload and result, `Task[P, R]` for `async def f(payload: P) -> R`,
so triggering it from another task is typed."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, TypeVar, Unpack, cast

from cairn.cron import Cron
from cairn.v1 import worker_service_pb2
from worker_sdk import _children, _validate
from worker_sdk._children import ChildResult
from worker_sdk._policies import Queue, Retry
from worker_sdk._requests import retry_policy, to_duration
from worker_sdk._types import Run, RunHandle, TriggerOptions
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError

P = TypeVar("P")
R = TypeVar("R")


def validate_schedule(task_id: str, schedule: Any, timezone: Any) -> None:
    """Checks a declared schedule (cron expression) and its time zone with
    cairn.cron; InvalidArgumentError naming the task and the problem."""
    if schedule is None:
        if timezone is not None:
            raise InvalidArgumentError(f"task '{task_id}': timezone {timezone!r} is given without a schedule")
        return
    if not isinstance(schedule, str) or not schedule.strip():
        raise InvalidArgumentError(
            f"task '{task_id}': schedule must be a non-empty cron expression string, got {schedule!r}"
        )
    if timezone is not None and (not isinstance(timezone, str) or not timezone):
        raise InvalidArgumentError(
            f"task '{task_id}': timezone must be an IANA time zone name such as "
            f"'Europe/Paris', got {timezone!r}"
        )
    try:
        Cron.parse(schedule, timezone or "UTC")
    except ValueError as exc:
        raise InvalidArgumentError(
            f"task '{task_id}': schedule {schedule!r}"
            f"{f' in {timezone}' if timezone else ''} is invalid: {exc}"
        ) from None


def _max_duration(task_id: str, value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return _validate.option_seconds(f"task '{task_id}': max_duration", value)


class Task(Generic[P, R]):
    """A declared task: its id, queue, retry policy, schedule and execution budget,
    and the function (`.fn`) that runs one attempt with the run's payload (P) and
    returns its result (R). From inside another task, `trigger`,
    `trigger_and_wait` and `batch_trigger_and_wait` start child runs of it."""

    def __init__(
        self,
        fn: Callable[[P], Awaitable[R]],
        id: str,
        queue: Queue | str | None = None,
        retry: Retry | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        max_duration: timedelta | float | None = None,
    ) -> None:
        self.id = _validate.name("task id", id)
        validate_schedule(self.id, schedule, timezone)
        self.schedule = schedule
        self.timezone = timezone
        self.max_duration = _max_duration(id, max_duration)
        if not inspect.iscoroutinefunction(fn):
            raise ArgumentTypeError(f"task '{id}': {_fn_name(fn)} must be an 'async def' function")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise ArgumentTypeError(
                f"task '{id}': {_fn_name(fn)} must take exactly one argument, the payload"
            ) from None
        except ValueError:
            pass  # no signature to inspect (some builtins); trust the caller
        self.queue: Queue | None
        if queue is None:
            self.queue = None
            self.queue_name = self.id
        elif isinstance(queue, Queue):
            self.queue = queue
            self.queue_name = queue.name
        elif isinstance(queue, str):
            self.queue = None
            self.queue_name = _validate.name(f"task '{id}': queue name", queue)
        else:
            raise ArgumentTypeError(f"task '{id}': queue must be a Queue or a string, got {queue!r}")
        if retry is None:
            retry = Retry()
        elif not isinstance(retry, Retry):
            raise ArgumentTypeError(f"task '{id}': retry must be a Retry, got {retry!r}")
        self.retry = retry
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def _definition(self) -> worker_service_pb2.TaskDefinition:
        """The task as a worker declares it when it registers."""
        d = worker_service_pb2.TaskDefinition(
            task_id=self.id,
            queue=self.queue_name,
            retry=retry_policy(self.retry),
            schedule=self.schedule or "",
            timezone=self.timezone or "",
        )
        if self.max_duration is not None:
            d.max_duration.CopyFrom(to_duration(self.max_duration))
        if self.queue is not None and self.queue.concurrency_limit is not None:
            d.concurrency_limit = self.queue.concurrency_limit
        return d

    def trigger(
        self, payload: P, *, idempotency_key: str | None = None, **options: Unpack[TriggerOptions]
    ) -> Awaitable[RunHandle | Run[R]]:
        """Starts a run of this task. Inside a task: a step that triggers a child
        run (its parent is the running run; a replay returns the same child) and
        returns a RunHandle. Elsewhere: a trigger to the frontend of
        $CAIRN_ADDRESS, returning the Run. Options: delay, ttl, max_duration
        (timedelta or seconds), priority, tags, metadata, concurrency_key (the
        queue's limits then apply per key)."""
        started = _children.trigger(self.id, payload, idempotency_key, options)
        return cast(Awaitable[RunHandle | Run[R]], started)

    def trigger_and_wait(self, payload: P, **options: Unpack[TriggerOptions]) -> Awaitable[R]:
        """Inside a task only: triggers a child run of this task and suspends until
        it finishes. Returns its output; raises ChildRunFailedError when it ended
        otherwise. Options as for trigger."""
        result: Awaitable[R] = _children.trigger_and_wait(self.id, payload, options)
        return result

    def batch_trigger_and_wait(
        self, payloads: Iterable[P], **options: Unpack[TriggerOptions]
    ) -> Awaitable[list[ChildResult[R]]]:
        """Inside a task only: triggers one child run of this task per payload, all
        at once, and suspends until every one has finished. Returns a ChildResult
        per payload, in order. Options as for trigger, applied to every child."""
        results: Awaitable[list[ChildResult[R]]] = _children.batch_trigger_and_wait(
            self.id, payloads, options
        )
        return results

    def __repr__(self) -> str:
        return f"<Task {self.id!r} queue={self.queue_name!r} fn={_fn_name(self.fn)}>"


def _fn_name(fn: Any) -> str:
    name: str = getattr(fn, "__qualname__", None) or repr(fn)
    return name


def task(
    *,
    id: str,
    queue: Queue | str | None = None,
    retry: Retry | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    max_duration: timedelta | float | None = None,
) -> Callable[[Callable[[P], Awaitable[R]]], Task[P, R]]:
    """Declares an `async def fn(payload: P) -> R` as the task `id`, a Task[P, R].
    Its runs go to `queue` (a Queue or a queue name; the task id when omitted) and
    are retried as new attempts by `retry` (Retry() when omitted: 3 attempts).
    With `schedule` (a cron expression: 5 fields, or 6 with seconds first, read in
    `timezone`, UTC by default) the cluster runs it on that schedule;
    `max_duration` (timedelta or seconds) bounds each run's execution time."""
    _validate.name("task id", id)
    if retry is not None and not isinstance(retry, Retry):
        raise ArgumentTypeError(f"task '{id}': retry must be a Retry, got {retry!r}")
    validate_schedule(id, schedule, timezone)
    _max_duration(id, max_duration)

    def decorate(fn: Callable[[P], Awaitable[R]]) -> Task[P, R]:
        return Task(
            fn,
            id=id,
            queue=queue,
            retry=retry,
            schedule=schedule,
            timezone=timezone,
            max_duration=max_duration,
        )

    return decorate
