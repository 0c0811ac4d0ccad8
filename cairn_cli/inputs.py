"""What the CLI checks and builds before a call leaves it: task ids, queue
names, JSON payloads, durations, queue limits and a trigger's options, checked
as the SDK checks them (a bad value is a ValueError or TypeError, which the CLI
reports with exit status 2)."""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from cairn import payloads
from cairn.limits import MAX_CONCURRENCY_KEY_CHARS, MAX_PAYLOAD_BYTES
from cairn.v1 import common_pb2

INT32_MAX = 2**31 - 1
MAX_QUEUE_NAME = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")  # as the SDK checks queue names


def task_id(task: Any) -> str:
    if isinstance(task, str) and task:
        return task
    raise TypeError(f"task must be a task id string or a Task, got {task!r}")


def queue_name(name: Any) -> str:
    """Checks a queue name as the SDK does: 1 to 128 characters, starting with a
    letter or digit, then letters, digits, '_', '.', ':' or '-'."""
    kind = "queue name"
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError(f"{kind} must not be empty")
    if len(name) > MAX_QUEUE_NAME:
        raise ValueError(
            f"{kind} {name[:40]!r}... is {len(name)} characters; at most {MAX_QUEUE_NAME} are allowed"
        )
    if not NAME_RE.match(name):
        raise ValueError(
            f"{kind} {name!r} is invalid: it must start with a letter or digit "
            "and contain only letters, digits, '_', '.', ':' and '-'"
        )
    return name


def payload(what: str, value: Any) -> common_pb2.Payload:
    try:
        data = payloads.encode_json(value)
    except payloads.PayloadError as exc:
        raise payloads.PayloadError(f"{what}: {exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"{what}: {len(data)} bytes as JSON exceeds the limit of {MAX_PAYLOAD_BYTES} bytes "
            f"({MAX_PAYLOAD_BYTES // (1024 * 1024)} MiB)"
        )
    return common_pb2.Payload(data=data, encoding=payloads.JSON)


def duration(what: str, seconds: float, *, allow_zero: bool = True) -> Duration:
    """seconds (finite and not negative, as the flag types make them) as a Duration."""
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be finite, got {seconds!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "greater than 0"
        raise ValueError(f"{what} must be {bound} seconds, got {seconds:g}")
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def limit(what: str, value: int) -> int:
    """A queue limit: 0 (no limit) to 2**31-1."""
    if not 0 <= value <= INT32_MAX:
        raise ValueError(f"{what} must be from 0 (no limit) to {INT32_MAX}, got {value}")
    return value


def trigger_options(
    delay: float | None = None,
    ttl: float | None = None,
    max_duration: float | None = None,
    priority: int | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    concurrency_key: str | None = None,
) -> common_pb2.TriggerOptions:
    """The TriggerOptions of `cairn trigger`; None leaves an option unset."""
    opts = common_pb2.TriggerOptions()
    if delay is not None:
        opts.delay.CopyFrom(duration("delay", delay))
    if ttl is not None:
        opts.ttl.CopyFrom(duration("ttl", ttl, allow_zero=False))
    if priority is not None:
        if not -INT32_MAX - 1 <= priority <= INT32_MAX:
            raise ValueError(f"priority must fit in 32 bits, got {priority}")
        opts.priority = priority
    if tags is not None:
        for tag in tags:
            if not tag:
                raise TypeError(f"tags must be non-empty strings, got {tag!r}")
        opts.tags.extend(tags)
    if metadata is not None:
        try:
            payloads.encode_json(metadata)
        except payloads.PayloadError as exc:
            raise ValueError(f"metadata: {exc}") from None
        s = Struct()
        s.update(metadata)
        opts.metadata.CopyFrom(s)
    if max_duration is not None:
        opts.max_duration.CopyFrom(duration("max_duration", max_duration, allow_zero=False))
    if concurrency_key is not None:
        if not concurrency_key:
            raise ValueError("concurrency_key must not be empty")
        if len(concurrency_key) > MAX_CONCURRENCY_KEY_CHARS:
            raise ValueError(
                f"concurrency_key {concurrency_key[:40]!r}... is {len(concurrency_key)} characters; at "
                f"most {MAX_CONCURRENCY_KEY_CHARS} are allowed"
            )
        opts.concurrency_key = concurrency_key
    return opts
