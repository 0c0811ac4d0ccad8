"""Retry policies and queues, as declared on tasks and steps (and, for queues,
as the server reports them back)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cairn.backoff import RetrySettings
from worker_sdk import _validate
from worker_sdk._types import RateLimit
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError, NonRetryableError, type_name


@dataclass(frozen=True)
class Retry:
    """How a task (as new attempts) or a step (in place) is retried. Attempt n waits
    min(max_timeout, min_timeout * factor**(n-1)) seconds before it starts, scaled
    by a random factor in [0.5, 1] with jitter. Errors of the types in
    non_retryable (and NonRetryableError) are never retried."""

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0
    max_timeout: float = 60.0
    jitter: bool = False
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        _validate.int_field("retry.max_attempts", self.max_attempts)
        if self.max_attempts > _validate.INT32_MAX:
            raise InvalidArgumentError(f"retry.max_attempts must fit in 32 bits, got {self.max_attempts}")
        for field in ("factor", "min_timeout", "max_timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ArgumentTypeError(f"retry.{field} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidArgumentError(f"retry.{field} must be finite, got {value}")
            object.__setattr__(self, field, float(value))
        if not isinstance(self.jitter, bool):
            raise ArgumentTypeError(f"retry.jitter must be a bool, got {self.jitter!r}")
        given: Any = self.non_retryable
        if isinstance(given, type):
            given = (given,)
        try:
            found = tuple(given)
        except TypeError:
            raise ArgumentTypeError(
                f"retry.non_retryable must be a tuple of exception classes, got {self.non_retryable!r}"
            ) from None
        for t in found:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise ArgumentTypeError(f"retry.non_retryable must contain exception classes, got {t!r}")
        object.__setattr__(self, "non_retryable", found)
        try:
            _ = self.settings
        except ValueError as exc:  # cairn.backoff names the field
            raise InvalidArgumentError(str(exc)) from None

    @property
    def settings(self) -> RetrySettings:
        """The policy as the shared backoff helpers take it."""
        return RetrySettings(
            max_attempts=self.max_attempts,
            factor=self.factor,
            min_timeout=self.min_timeout,
            max_timeout=self.max_timeout,
            jitter=self.jitter,
        )

    def is_non_retryable(self, exc: BaseException) -> bool:
        """Whether exc ends retrying at once."""
        return isinstance(exc, NonRetryableError) or isinstance(exc, self.non_retryable)

    def non_retryable_names(self) -> frozenset[str]:
        """Qualified names of the non-retryable types, to match errors known only by
        their recorded type name (a replayed step failure)."""
        return frozenset(type_name(t) for t in self.non_retryable)


@dataclass(frozen=True)
class Queue:
    """A named queue that tasks put their runs on. Declared with a task,
    `Queue(name, concurrency_limit=N)`: at most N runs of the queue execute at
    once (a waiting run holds no slot); the limit is sent with the task
    definitions when a worker registers. Read back from a client (list_queues,
    update_queue, ...) it also carries the server's view: rate_limit and
    max_depth (None when unlimited), paused, depth (queued runs), running
    (executing runs), and managed (changed through the API, so task
    declarations no longer change it)."""

    name: str
    concurrency_limit: int | None = None
    rate_limit: RateLimit | None = None
    max_depth: int | None = None
    paused: bool = False
    depth: int = 0
    running: int = 0
    managed: bool = False
    updated_at: datetime | None = None
    namespace: str = ""

    def __post_init__(self) -> None:
        _validate.name("queue name", self.name)
        limit = self.concurrency_limit
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise ArgumentTypeError(
                    f"queue {self.name!r}: concurrency_limit must be an int or None, got {limit!r}"
                )
            if limit < 1:
                raise InvalidArgumentError(
                    f"queue {self.name!r}: concurrency_limit must be at least 1, got {limit}"
                )
