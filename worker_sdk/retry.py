"""Retry policies and queues, as declared on tasks and steps."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.duration_pb2 import Duration

from cairn.backoff import RetrySettings
from cairn.v1 import common_pb2
from worker_sdk.errors import NonRetryableError, type_name

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
MAX_NAME_LENGTH = 128


def validate_name(kind: str, name: Any) -> str:
    """Checks a task id or queue name: 1 to 128 characters, starting with a letter or
    digit, then letters, digits, '_', '.', ':' or '-'. Returns it."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{kind} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{kind} {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_LENGTH} are allowed"
        )
    if not NAME_RE.match(name):
        raise ValueError(
            f"{kind} {name!r} is invalid: it must start with a letter or digit "
            "and contain only letters, digits, '_', '.', ':' and '-'"
        )
    return name


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


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
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"retry.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts > 2**31 - 1:
            raise ValueError(f"retry.max_attempts must fit in 32 bits, got {self.max_attempts}")
        for field in ("factor", "min_timeout", "max_timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"retry.{field} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"retry.{field} must be finite, got {value}")
            object.__setattr__(self, field, float(value))
        if not isinstance(self.jitter, bool):
            raise TypeError(f"retry.jitter must be a bool, got {self.jitter!r}")
        types = self.non_retryable
        if isinstance(types, type):
            types = (types,)
        try:
            types = tuple(types)
        except TypeError:
            raise TypeError(
                f"retry.non_retryable must be a tuple of exception classes, got {self.non_retryable!r}"
            ) from None
        for t in types:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise TypeError(f"retry.non_retryable must contain exception classes, got {t!r}")
        object.__setattr__(self, "non_retryable", types)
        _ = self.settings  # raises ValueError naming the field

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

    def to_proto(self) -> common_pb2.RetryPolicy:
        """The policy as sent to the server with a task definition."""
        return common_pb2.RetryPolicy(
            max_attempts=self.max_attempts,
            factor=self.factor,
            min_timeout=_duration(self.min_timeout),
            max_timeout=_duration(self.max_timeout),
            jitter=self.jitter,
        )

    def is_non_retryable(self, exc: BaseException) -> bool:
        """Whether exc ends retrying at once."""
        return isinstance(exc, NonRetryableError) or isinstance(exc, self.non_retryable)

    def non_retryable_names(self) -> frozenset[str]:
        """Qualified names of the non-retryable types, to match errors known only by
        their recorded type name (a replayed step failure)."""
        return frozenset(type_name(t) for t in self.non_retryable)


class Queue:
    """A named queue that tasks put their runs on. With concurrency_limit, at most
    this many runs of the queue execute at once (a waiting run holds no slot); the
    limit is sent with the task definitions when a worker registers."""

    def __init__(self, name: str, concurrency_limit: int | None = None) -> None:
        self.name = validate_name("queue name", name)
        if concurrency_limit is not None:
            if isinstance(concurrency_limit, bool) or not isinstance(concurrency_limit, int):
                raise TypeError(
                    f"queue {name!r}: concurrency_limit must be an int or None, got {concurrency_limit!r}"
                )
            if concurrency_limit < 1:
                raise ValueError(
                    f"queue {name!r}: concurrency_limit must be at least 1, got {concurrency_limit}"
                )
        self.concurrency_limit = concurrency_limit

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, concurrency_limit={self.concurrency_limit!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Queue)
            and other.name == self.name
            and other.concurrency_limit == self.concurrency_limit
        )

    def __hash__(self) -> int:
        return hash((self.name, self.concurrency_limit))
