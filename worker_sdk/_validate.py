"""Checks of the SDK's inputs against the protocol's limits (cairn.limits), made
before anything is sent: a bad value raises InvalidArgumentError (a ValueError)
or ArgumentTypeError (a TypeError) naming the field, as the server would refuse it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from cairn import limits, payloads
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError

INT32_MAX = 2**31 - 1


def name(kind: str, value: Any) -> str:
    """Checks a task id or queue name: 1 to 128 characters, starting with a letter or
    digit, then letters, digits, '_', '.', ':' or '-'. Returns it."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{kind} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidArgumentError(f"{kind} must not be empty")
    if len(value) > 128:
        raise InvalidArgumentError(
            f"{kind} {value[:40]!r}... is {len(value)} characters; at most 128 are allowed"
        )
    if not limits.ID_RE.match(value):
        raise InvalidArgumentError(
            f"{kind} {value!r} is invalid: it must start with a letter or digit "
            "and contain only letters, digits, '_', '.', ':' and '-'"
        )
    return value


def text(what: str, value: Any, max_chars: int, *, required: bool = False) -> str:
    """Checks a string field of at most max_chars characters (non-empty when
    required). Returns it."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{what} must be a string, got {value!r}")
    if required and not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > max_chars:
        raise InvalidArgumentError(
            f"{what} {value[:40]!r}... is {len(value)} characters; at most {max_chars} are allowed"
        )
    return value


def duration_seconds(
    what: str, value: Any, *, allow_zero: bool = True, max_seconds: float | None = None
) -> float:
    """A timedelta or a number of seconds as float seconds; ArgumentTypeError or
    InvalidArgumentError naming `what` when it is not a finite, non-negative
    duration (or is zero and allow_zero is False, or is over max_seconds)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ArgumentTypeError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    if not math.isfinite(seconds):
        raise InvalidArgumentError(f"{what} must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "greater than 0"
        raise InvalidArgumentError(f"{what} must be {bound} seconds, got {seconds:g}")
    if max_seconds is not None and seconds > max_seconds:
        raise InvalidArgumentError(f"{what} must be at most {max_seconds:g} seconds, got {seconds:g}")
    return seconds


def option_seconds(what: str, value: Any, *, allow_zero: bool = False) -> float:
    """A trigger's delay, ttl or max_duration: at most cairn.limits.MAX_DELAY_SECONDS."""
    return duration_seconds(what, value, allow_zero=allow_zero, max_seconds=limits.MAX_DELAY_SECONDS)


def int_field(what: str, value: Any) -> int:
    """Checks an int (not a bool). Returns it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{what} must be an int, got {value!r}")
    return value


def priority(what: str, value: Any) -> int:
    """A run's priority: an int from MIN_PRIORITY to MAX_PRIORITY (-1000 to 1000)."""
    int_field(what, value)
    if not limits.MIN_PRIORITY <= value <= limits.MAX_PRIORITY:
        raise InvalidArgumentError(
            f"{what} must be from {limits.MIN_PRIORITY} to {limits.MAX_PRIORITY}, got {value}"
        )
    return int(value)


def tags(what: str, value: Any) -> list[str]:
    """A run's tags: at most MAX_TAGS non-empty strings of at most MAX_TAG_CHARS."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(f"tags must be a list of strings, got {value!r}")
    found = list(value)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise ArgumentTypeError(f"tags must be non-empty strings, got {tag!r}")
    if len(found) > limits.MAX_TAGS:
        raise InvalidArgumentError(f"{what}: at most {limits.MAX_TAGS} tags, got {len(found)}")
    for i, tag in enumerate(found):
        if len(tag) > limits.MAX_TAG_CHARS:
            raise InvalidArgumentError(f"{what}[{i}]: must be 1-{limits.MAX_TAG_CHARS} characters")
    return found


def concurrency_key(value: Any) -> str:
    """Checks a concurrency key: a string of 1 to 128 characters. Returns it."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"concurrency_key must be a string, got {value!r}")
    if not value:
        raise InvalidArgumentError("concurrency_key must not be empty")
    if len(value) > limits.MAX_CONCURRENCY_KEY_CHARS:
        raise InvalidArgumentError(
            f"concurrency_key {value[:40]!r}... is {len(value)} characters; at "
            f"most {limits.MAX_CONCURRENCY_KEY_CHARS} are allowed"
        )
    return value


def idempotency_key(what: str, value: Any) -> str:
    """An idempotency key: a string of at most MAX_KEY_CHARS characters ("" for none)."""
    return text(what, value, limits.MAX_KEY_CHARS)


def json_object(what: str, value: Any) -> dict[str, Any]:
    """value as a plain JSON object (a dict with string keys, round-tripped through
    JSON); ArgumentTypeError or InvalidArgumentError naming `what` otherwise."""
    if not isinstance(value, Mapping):
        raise ArgumentTypeError(f"{what} must be a dict (a JSON object), got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ArgumentTypeError(f"{what} keys must be strings, got {key!r}")
    try:
        result: dict[str, Any] = json.loads(payloads.encode_json(dict(value)))
    except payloads.PayloadError as exc:
        raise InvalidArgumentError(f"{what}: {exc}") from None
    return result


def batch_size(what: str, count: int) -> None:
    """A batch of runs or child runs: at most MAX_BATCH items."""
    if count > limits.MAX_BATCH:
        raise InvalidArgumentError(f"{what}: at most {limits.MAX_BATCH} runs per batch, got {count}")
