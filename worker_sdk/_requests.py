"""SDK values as the protocol takes them: durations and times as Duration and
Timestamp, JSON objects as Struct, payloads, retry policies, trigger options,
trigger requests and ListRuns' filters. Every value is checked first (_validate), so a bad one is
refused, naming its field, before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import limits, payloads, resend, tracing
from cairn.v1 import common_pb2, queue_service_pb2, run_service_pb2
from worker_sdk import _validate
from worker_sdk._policies import Retry
from worker_sdk._types import RunStatus, TriggerOptions
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError, PayloadError

TRIGGER_OPTION_NAMES = tuple(TriggerOptions.__annotations__)


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


def to_struct(what: str, value: Any) -> Struct:
    """A JSON object as a google.protobuf Struct, at most MAX_METADATA_BYTES as
    JSON (measured as the server measures it)."""
    s = Struct()
    s.update(_validate.json_object(what, value))
    size = len(json.dumps(json_format.MessageToDict(s)))
    if size > limits.MAX_METADATA_BYTES:
        raise InvalidArgumentError(
            f"{what}: {size} bytes of JSON exceeds the limit of {limits.MAX_METADATA_BYTES}"
        )
    return s


def encode_payload(what: str, value: Any) -> common_pb2.Payload:
    """value as a json/plain Payload of at most MAX_PAYLOAD_BYTES; PayloadError
    naming `what` when it is not JSON or too large."""
    try:
        data = payloads.encode_json(value)
    except payloads.PayloadError as exc:
        raise PayloadError(f"{what}: {exc}") from None
    if len(data) > limits.MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{what}: {len(data)} bytes exceeds the limit of {limits.MAX_PAYLOAD_BYTES} bytes")
    return common_pb2.Payload(data=data, encoding=payloads.JSON)


def retry_policy(retry: Retry) -> common_pb2.RetryPolicy:
    """A Retry as sent to the server with a task definition."""
    return common_pb2.RetryPolicy(
        max_attempts=retry.max_attempts,
        factor=retry.factor,
        min_timeout=to_duration(retry.min_timeout),
        max_timeout=to_duration(retry.max_timeout),
        jitter=retry.jitter,
    )


def trigger_options(
    delay: timedelta | float | None = None,
    ttl: timedelta | float | None = None,
    priority: int | None = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    max_duration: timedelta | float | None = None,
    concurrency_key: str | None = None,
    traceparent: str | None = None,
    *,
    field: str = "options",
) -> common_pb2.TriggerOptions:
    """The TriggerOptions message for the given options; None leaves one unset.
    delay: start no earlier than this from now; ttl: expire if not started within
    this; priority: higher is dispatched first in its queue (-1000 to 1000); tags:
    labels to list runs by; metadata: a small JSON object readable and updatable
    from the run; max_duration: the run's execution time budget; concurrency_key:
    the queue's concurrency and rate limits apply per key (e.g. one key per
    tenant), and keys are served fairly. A bad value raises an error naming the
    option as `field`.name (e.g. options.priority, runs[3].options.priority)."""
    opts = common_pb2.TriggerOptions()
    if delay is not None:
        opts.delay.CopyFrom(to_duration(_validate.option_seconds(f"{field}.delay", delay, allow_zero=True)))
    if ttl is not None:
        opts.ttl.CopyFrom(to_duration(_validate.option_seconds(f"{field}.ttl", ttl)))
    if priority is not None:
        opts.priority = _validate.priority(f"{field}.priority", priority)
    if tags is not None:
        opts.tags.extend(_validate.tags(f"{field}.tags", tags))
    if metadata is not None:
        opts.metadata.CopyFrom(to_struct(f"{field}.metadata", metadata))
    if max_duration is not None:
        opts.max_duration.CopyFrom(
            to_duration(_validate.option_seconds(f"{field}.max_duration", max_duration))
        )
    if concurrency_key is not None:
        opts.concurrency_key = _validate.concurrency_key(concurrency_key)
    if traceparent is not None:
        why = tracing.problem(traceparent) if isinstance(traceparent, str) else "must be a str"
        if why is not None:
            raise InvalidArgumentError(f"{field}.traceparent: {why}")
        opts.traceparent = traceparent
    return opts


def options_from_kwargs(
    where: str, options: Mapping[str, Any], field: str = "options"
) -> common_pb2.TriggerOptions:
    """trigger_options(**options), with an ArgumentTypeError naming `where` for an
    unknown option."""
    unknown = sorted(set(options) - set(TRIGGER_OPTION_NAMES))
    if unknown:
        raise ArgumentTypeError(
            f"{where}: unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(TRIGGER_OPTION_NAMES)}"
        )
    return trigger_options(**options, field=field)


def trigger_request(
    namespace: str,
    task_id: str,
    payload: Any,
    idempotency_key: str | None,
    options: Mapping[str, Any],
    where: str = "trigger",
    field: str = "",
) -> run_service_pb2.TriggerRunRequest:
    """A TriggerRunRequest; `field` prefixes the names in error messages (runs[3]. in a batch).
    Without an idempotency key it carries a new request id (a UUID), which every
    sending of this request keeps: the server answers a trigger sent again with
    it by the run the first made, so the request may be sent again after
    UNAVAILABLE without making a second run."""
    opts = options_from_kwargs(where, options, f"{field}options")
    key = _validate.idempotency_key(f"{field}idempotency_key", idempotency_key or "")
    request = run_service_pb2.TriggerRunRequest(
        namespace=namespace,
        task_id=task_id,
        payload=encode_payload(f"payload for task '{task_id}'", payload),
        idempotency_key=key,
        request_id="" if key else resend.new_request_id(),
    )
    if opts.ByteSize():
        request.options.CopyFrom(opts)
    return request


def queue_limit(what: str, value: Any) -> int:
    """A queue limit: an int from 0 (no limit) to 2**31-1."""
    _validate.int_field(what, value)
    if not 0 <= value <= _validate.INT32_MAX:
        raise InvalidArgumentError(f"{what} must be from 0 (no limit) to {_validate.INT32_MAX}, got {value}")
    return int(value)


def rate_limit(name: str, value: Any) -> queue_service_pb2.RateLimit:
    """(limit, period) with period a timedelta or seconds, as a RateLimit; a limit
    of 0 removes the rate limit (its period is then ignored)."""
    what = f"queue {name!r}: rate_limit"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ArgumentTypeError(
            f"{what} must be a (limit, period) pair, e.g. (10, 1) for 10 per "
            f"second or (0, 0) to remove it; got {value!r}"
        )
    limit = queue_limit(f"{what} limit", value[0])
    rate = queue_service_pb2.RateLimit(limit=limit)
    if limit:
        period = _validate.duration_seconds(f"{what} period", value[1], allow_zero=False)
        rate.period.CopyFrom(to_duration(period))
    return rate


def run_statuses(status: str | Iterable[str] | None) -> list[common_pb2.RunStatus]:
    """Run status names (or RunStatus members) as the protocol's numbers."""
    if status is None:
        return []
    names = [status] if isinstance(status, str) else list(status)
    known = sorted(s.value for s in RunStatus if s.value)
    out = []
    for name in names:
        text = str(name).lower()
        if text not in known:
            raise InvalidArgumentError(f"status {name!r} is not a run status; use one of {', '.join(known)}")
        out.append(cast(common_pb2.RunStatus, common_pb2.RunStatus.Value(f"RUN_STATUS_{text.upper()}")))
    return out


def created_time(what: str, value: Any) -> Timestamp | None:
    """A list filter's creation time bound (a timezone-aware datetime) as a
    Timestamp; None for None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ArgumentTypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{what} must be timezone-aware, e.g. datetime(..., tzinfo=timezone.utc), got {value!r}"
        )
    if not 0 <= value.timestamp() < 253402300800:  # 1970-01-01 to 9999-12-31 in UTC, as the server takes
        raise InvalidArgumentError(f"{what} must be between 1970 and 9999, got {value.isoformat()}")
    return to_timestamp(value)


def list_runs_request(
    namespace: str,
    task_id: str,
    status: str | Iterable[str] | None,
    tag: str | None,
    parent_run_id: str | None,
    queue: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> run_service_pb2.ListRunsRequest:
    """ListRuns' filters, each checked (a queue name, creation times that are
    timezone-aware datetimes with created_after before created_before)."""
    since = created_time("created_after", created_after)
    until = created_time("created_before", created_before)
    if since is not None and until is not None and since.ToNanoseconds() >= until.ToNanoseconds():
        raise InvalidArgumentError(
            f"created_before ({created_before}) must be later than created_after ({created_after})"
        )
    return run_service_pb2.ListRunsRequest(
        namespace=namespace,
        task_id=task_id,
        statuses=run_statuses(status),
        tag=tag or "",
        parent_run_id=parent_run_id or "",
        queue=_validate.name("queue", queue) if queue is not None else "",
        created_after=since,
        created_before=until,
    )
