"""Run options as the protocol takes them: durations (timedelta or seconds) as
google.protobuf Duration, metadata (a JSON object) as google.protobuf Struct, and
the TriggerOptions message every way of triggering shares."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import payloads
from cairn.v1 import common_pb2

INT32_MAX = 2**31 - 1
MAX_CONCURRENCY_KEY = 128
TRIGGER_OPTION_NAMES = ("delay", "ttl", "priority", "tags", "metadata", "max_duration", "concurrency_key")


def duration_seconds(what: str, value: Any, *, allow_zero: bool = True) -> float:
    """A timedelta or a number of seconds as float seconds; TypeError or ValueError
    naming `what` when it is not a finite, non-negative duration (or is zero and
    allow_zero is False)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be a timedelta or a number of seconds, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "greater than 0"
        raise ValueError(f"{what} must be {bound} seconds, got {seconds:g}")
    return seconds


def to_duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def to_timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(when: datetime) -> str:
    """An aware datetime as ISO-8601 in UTC with a 'Z', e.g. 2025-01-02T03:04:05.123456Z."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def parse_iso(text: str) -> datetime:
    """An ISO-8601 time as an aware datetime (UTC when it names no offset)."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def json_object(what: str, value: Any) -> dict[str, Any]:
    """value as a plain JSON object (a dict with string keys, round-tripped through
    JSON); TypeError or ValueError naming `what` otherwise."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict (a JSON object), got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be strings, got {key!r}")
    try:
        return json.loads(payloads.encode_json(dict(value)))
    except payloads.PayloadError as exc:
        raise ValueError(f"{what}: {exc}") from None


def to_struct(what: str, value: Any) -> Struct:
    """A JSON object as a google.protobuf Struct (validated first)."""
    s = Struct()
    s.update(json_object(what, value))
    return s


def _tags(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"tags must be a list of strings, got {value!r}")
    tags = list(value)
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r}")
    return tags


def _concurrency_key(value: Any) -> str:
    """Checks a concurrency key: a string of 1 to 128 characters. Returns it."""
    if not isinstance(value, str):
        raise TypeError(f"concurrency_key must be a string, got {value!r}")
    if not value:
        raise ValueError("concurrency_key must not be empty")
    if len(value) > MAX_CONCURRENCY_KEY:
        raise ValueError(
            f"concurrency_key {value[:40]!r}... is {len(value)} characters; at "
            f"most {MAX_CONCURRENCY_KEY} are allowed"
        )
    return value


def trigger_options(
    delay: timedelta | float | None = None,
    ttl: timedelta | float | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    max_duration: timedelta | float | None = None,
    concurrency_key: str | None = None,
) -> common_pb2.TriggerOptions:
    """The TriggerOptions message for the given options; None leaves one unset.
    delay: start no earlier than this from now; ttl: expire if not started within
    this; priority: higher is dispatched first in its queue; tags: labels to list
    runs by; metadata: a small JSON object readable and updatable from the run;
    max_duration: the run's execution time budget; concurrency_key: the queue's
    concurrency and rate limits apply per key (e.g. one key per tenant), and keys
    are served fairly. Raises TypeError or ValueError naming the option."""
    opts = common_pb2.TriggerOptions()
    if delay is not None:
        opts.delay.CopyFrom(to_duration(duration_seconds("delay", delay)))
    if ttl is not None:
        opts.ttl.CopyFrom(to_duration(duration_seconds("ttl", ttl, allow_zero=False)))
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {priority!r}")
        if not -INT32_MAX - 1 <= priority <= INT32_MAX:
            raise ValueError(f"priority must fit in 32 bits, got {priority}")
        opts.priority = priority
    if tags is not None:
        opts.tags.extend(_tags(tags))
    if metadata is not None:
        opts.metadata.CopyFrom(to_struct("metadata", metadata))
    if max_duration is not None:
        opts.max_duration.CopyFrom(
            to_duration(duration_seconds("max_duration", max_duration, allow_zero=False))
        )
    if concurrency_key is not None:
        opts.concurrency_key = _concurrency_key(concurrency_key)
    return opts


def options_from_kwargs(where: str, options: Mapping[str, Any]) -> common_pb2.TriggerOptions:
    """trigger_options(**options), with a TypeError naming `where` for an unknown option."""
    unknown = sorted(set(options) - set(TRIGGER_OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"{where}: unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(TRIGGER_OPTION_NAMES)}"
        )
    return trigger_options(**options)


def encode_payload(what: str, value: Any) -> common_pb2.Payload:
    """value as a json/plain Payload; PayloadError naming `what` when it is not JSON."""
    try:
        data = payloads.encode_json(value)
    except payloads.PayloadError as exc:
        raise payloads.PayloadError(f"{what}: {exc}") from None
    return common_pb2.Payload(data=data, encoding=payloads.JSON)
