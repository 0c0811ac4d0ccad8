"""W3C trace context (https://www.w3.org/TR/trace-context/) as Cairn carries it:
a `traceparent` string travels from the triggering client (TriggerOptions.traceparent
or the gRPC metadata key `traceparent`) through the frontend to history, is stored
on the run, and is handed to the worker with each attempt
(AttemptAssignment.traceparent); Run.trace_id is its trace id. Pure: no
OpenTelemetry here (the SDK's optional spans are in worker_sdk/_tracing.py).

Only version 00 is made; a later version is accepted as the spec asks (its first
four fields read as version 00's), so a newer client still joins its trace."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

METADATA_KEY = "traceparent"  # the gRPC metadata key (lower case, as gRPC keys are)
MAX_LENGTH = 512  # a version above 00 may append fields; nothing sane is longer

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
SAMPLED = 0x01


@dataclass(frozen=True)
class TraceParent:
    """A parsed traceparent: the trace, the parent span and the flags."""

    trace_id: str  # 32 lower-case hex digits, not all zero
    span_id: str  # 16 lower-case hex digits, not all zero
    flags: int = SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def problem(value: str) -> str | None:
    """Why `value` is not a valid traceparent (a sentence), or None when it is."""
    if len(value) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters, got {len(value)}"
    match = _FORMAT.fullmatch(value)
    if match is None:
        return (
            "not a W3C traceparent: want 00-<32 hex trace id>-<16 hex span id>-<2 hex flags> "
            f"in lower case, got {value[:80]!r}"
        )
    version, trace_id, span_id, _, rest = match.groups()
    if version == "ff":
        return "version ff is invalid"
    if version == "00" and rest is not None:
        return "version 00 has exactly four fields"
    if trace_id == _ZERO_TRACE:
        return "the trace id is all zeros"
    if span_id == _ZERO_SPAN:
        return "the parent span id is all zeros"
    return None


def parse(value: str) -> TraceParent | None:
    """The traceparent in `value`, or None when it is not a valid one."""
    if problem(value) is not None:
        return None
    _, trace_id, span_id, flags = value.split("-")[:4]
    return TraceParent(trace_id, span_id, int(flags, 16))


def is_valid(value: str) -> bool:
    return problem(value) is None


def new(*, sampled: bool = True) -> TraceParent:
    """A new trace with a random trace id and span id."""
    trace_id = secrets.token_hex(16)
    while trace_id == _ZERO_TRACE:  # pragma: no cover - one chance in 2**128
        trace_id = secrets.token_hex(16)
    span_id = secrets.token_hex(8)
    while span_id == _ZERO_SPAN:  # pragma: no cover
        span_id = secrets.token_hex(8)
    return TraceParent(trace_id, span_id, SAMPLED if sampled else 0)


def valid_or_new(value: str) -> str:
    """`value` normalised to version 00 when it is a valid traceparent, else a new
    one: what a new run stores, so every run has a trace."""
    parsed = parse(value) if value else None
    return str(parsed if parsed is not None else new())


def trace_id_of(value: str) -> str:
    """The trace id of a traceparent, or "" when it is not a valid one."""
    parsed = parse(value) if value else None
    return parsed.trace_id if parsed is not None else ""
