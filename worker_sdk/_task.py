"""@task: declares an async function as a durable task a worker serves."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cairn.cron import Cron
from cairn.v1 import worker_service_pb2
from worker_sdk.options import duration_seconds, to_duration
from worker_sdk.retry import Queue, Retry, validate_name

if TYPE_CHECKING:
    from worker_sdk.children import ChildResult, RunHandle
    from worker_sdk.client import Run

TaskFn = Callable[[Any], Awaitable[Any]]


def validate_schedule(task_id: str, schedule: Any, timezone: Any) -> None:
    """Checks a declared schedule (cron expression) and its time zone with
    cairn.cron; ValueError naming the task and the problem."""
    if schedule is None:
        if timezone is not None:
            raise ValueError(f"task '{task_id}': timezone {timezone!r} is given without a schedule")
        return
    if not isinstance(schedule, str) or not schedule.strip():
        raise ValueError(
            f"task '{task_id}': schedule must be a non-empty cron expression string, got {schedule!r}"
        )
    if timezone is not None and (not isinstance(timezone, str) or not timezone):
        raise ValueError(
            f"task '{task_id}': timezone must be an IANA time zone name such as "
            f"'Europe/Paris', got {timezone!r}"
        )
    try:
        Cron.parse(schedule, timezone or "UTC")
    except ValueError as exc:
        raise ValueError(
            f"task '{task_id}': schedule {schedule!r}"
            f"{f' in {timezone}' if timezone else ''} is invalid: {exc}"
        ) from None


class Task:
    """A declared task: its id, queue, retry policy, schedule and execution budget,
    and the function (`.fn`) that runs one attempt with the run's payload. From
    inside another task, `trigger`, `trigger_and_wait` and `batch_trigger_and_wait`
    start child runs of it."""

    def __init__(
        self,
        fn: TaskFn,
        id: str,
        queue: Queue | str | None = None,
        retry: Retry | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        max_duration: timedelta | float | None = None,
    ) -> None:
        self.id = validate_name("task id", id)
        validate_schedule(self.id, schedule, timezone)
        self.schedule = schedule
        self.timezone = timezone
        self.max_duration = (
            None
            if max_duration is None
            else duration_seconds(f"task '{id}': max_duration", max_duration, allow_zero=False)
        )
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"task '{id}': {_fn_name(fn)} must be an 'async def' function")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise TypeError(
                f"task '{id}': {_fn_name(fn)} must take exactly one argument, the payload"
            ) from None
        except ValueError:
            pass  # no signature to inspect (some builtins); trust the caller
        if queue is None:
            self.queue: Queue | None = None
            self.queue_name = self.id
        elif isinstance(queue, Queue):
            self.queue = queue
            self.queue_name = queue.name
        elif isinstance(queue, str):
            self.queue = None
            self.queue_name = validate_name(f"task '{id}': queue name", queue)
        else:
            raise TypeError(f"task '{id}': queue must be a Queue or a string, got {queue!r}")
        if retry is None:
            retry = Retry()
        elif not isinstance(retry, Retry):
            raise TypeError(f"task '{id}': retry must be a Retry, got {retry!r}")
        self.retry = retry
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def definition(self) -> worker_service_pb2.TaskDefinition:
        """The task as a worker declares it when it registers."""
        d = worker_service_pb2.TaskDefinition(
            task_id=self.id,
            queue=self.queue_name,
            retry=self.retry.to_proto(),
            schedule=self.schedule or "",
            timezone=self.timezone or "",
        )
        if self.max_duration is not None:
            d.max_duration.CopyFrom(to_duration(self.max_duration))
        if self.queue is not None and self.queue.concurrency_limit is not None:
            d.concurrency_limit = self.queue.concurrency_limit
        return d

    def trigger(
        self, payload: Any = None, *, idempotency_key: str | None = None, **options: Any
    ) -> Awaitable[RunHandle | Run]:
        """Starts a run of this task. Inside a task: a step that triggers a child
        run (its parent is the running run; a replay returns the same child) and
        returns a RunHandle. Elsewhere: a trigger through an AsyncClient configured
        from the environment ($CAIRN_ADDRESS), returning the Run. Options: delay,
        ttl, max_duration (timedelta or seconds), priority, tags, metadata,
        concurrency_key (the queue's limits then apply per key)."""
        from worker_sdk import children

        return children.trigger(self, payload, idempotency_key, options)

    def trigger_and_wait(self, payload: Any = None, **options: Any) -> Awaitable[Any]:
        """Inside a task only: triggers a child run of this task and suspends until
        it finishes. Returns its output; raises ChildRunFailedError when it ended
        otherwise. Options as for trigger."""
        from worker_sdk import children

        return children.trigger_and_wait(self, payload, options)

    def batch_trigger_and_wait(self, payloads: Iterable[Any], **options: Any) -> Awaitable[list[ChildResult]]:
        """Inside a task only: triggers one child run of this task per payload, all
        at once, and suspends until every one has finished. Returns a ChildResult
        per payload, in order. Options as for trigger, applied to every child."""
        from worker_sdk import children

        return children.batch_trigger_and_wait(self, payloads, options)

    def __repr__(self) -> str:
        return f"<Task {self.id!r} queue={self.queue_name!r} fn={_fn_name(self.fn)}>"


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def task(
    *,
    id: str,
    queue: Queue | str | None = None,
    retry: Retry | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    max_duration: timedelta | float | None = None,
) -> Callable[[TaskFn], Task]:
    """Declares an `async def fn(payload)` as the task `id`. Its runs go to `queue`
    (a Queue or a queue name; the task id when omitted) and are retried as new
    attempts by `retry` (Retry() when omitted: 3 attempts). With `schedule` (a cron
    expression: 5 fields, or 6 with seconds first, read in `timezone`, UTC by
    default) the cluster runs it on that schedule; `max_duration` (timedelta or
    seconds) bounds each run's execution time."""
    validate_name("task id", id)
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"task '{id}': retry must be a Retry, got {retry!r}")
    validate_schedule(id, schedule, timezone)
    if max_duration is not None:
        duration_seconds(f"task '{id}': max_duration", max_duration, allow_zero=False)

    def decorate(fn: TaskFn) -> Task:
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
