"""@task: declares an async function as a durable task a worker serves."""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from cairn.v1 import worker_service_pb2

from worker_sdk.retry import Queue, Retry, validate_name

TaskFn = Callable[[Any], Awaitable[Any]]


class Task:
    """A declared task: its id, queue and retry policy, and the function (`.fn`)
    that runs one attempt with the run's payload."""

    def __init__(self, fn: TaskFn, id: str, queue: Queue | str | None = None,
                 retry: Retry | None = None) -> None:
        self.id = validate_name("task id", id)
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"task '{id}': {_fn_name(fn)} must be an 'async def' function")
        try:
            inspect.signature(fn).bind(None)
        except TypeError:
            raise TypeError(f"task '{id}': {_fn_name(fn)} must take exactly one argument, "
                            "the payload") from None
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
        return worker_service_pb2.TaskDefinition(task_id=self.id, queue=self.queue_name,
                                                 retry=self.retry.to_proto())

    def __repr__(self) -> str:
        return f"<Task {self.id!r} queue={self.queue_name!r} fn={_fn_name(self.fn)}>"


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def task(*, id: str, queue: Queue | str | None = None,
         retry: Retry | None = None) -> Callable[[TaskFn], Task]:
    """Declares an `async def fn(payload)` as the task `id`. Its runs go to `queue`
    (a Queue or a queue name; the task id when omitted) and are retried as new
    attempts by `retry` (Retry() when omitted: 3 attempts)."""
    validate_name("task id", id)
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"task '{id}': retry must be a Retry, got {retry!r}")

    def decorate(fn: TaskFn) -> Task:
        return Task(fn, id=id, queue=queue, retry=retry)

    return decorate
