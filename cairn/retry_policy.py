"""RetryPolicy messages <-> RetrySettings, with the protocol's defaults applied
(0 or unset fields mean "default"), so the SDK and the services read a policy
the same way."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

from cairn.backoff import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_TIMEOUT,
    DEFAULT_MIN_TIMEOUT,
    RetrySettings,
)
from cairn.v1 import common_pb2 as pb


def from_proto(policy: pb.RetryPolicy | None) -> RetrySettings:
    """Settings from a RetryPolicy; raises ValueError naming the bad field."""
    if policy is None:
        return RetrySettings()
    min_t = (
        policy.min_timeout.ToTimedelta().total_seconds()
        if policy.HasField("min_timeout")
        else DEFAULT_MIN_TIMEOUT
    )
    max_t = (
        policy.max_timeout.ToTimedelta().total_seconds()
        if policy.HasField("max_timeout")
        else max(DEFAULT_MAX_TIMEOUT, min_t)
    )
    return RetrySettings(
        max_attempts=policy.max_attempts or DEFAULT_MAX_ATTEMPTS,
        factor=policy.factor or DEFAULT_FACTOR,
        min_timeout=min_t,
        max_timeout=max_t,
        jitter=policy.jitter,
    )


def to_proto(s: RetrySettings) -> pb.RetryPolicy:
    """A RetryPolicy message carrying every field explicitly."""
    min_t, max_t = Duration(), Duration()
    min_t.FromNanoseconds(round(s.min_timeout * 1e9))
    max_t.FromNanoseconds(round(s.max_timeout * 1e9))
    return pb.RetryPolicy(
        max_attempts=s.max_attempts, factor=s.factor, min_timeout=min_t, max_timeout=max_t, jitter=s.jitter
    )


def to_dict(s: RetrySettings) -> dict[str, Any]:
    """JSON form, as stored on tasks and runs."""
    return {
        "max_attempts": s.max_attempts,
        "factor": s.factor,
        "min_timeout": s.min_timeout,
        "max_timeout": s.max_timeout,
        "jitter": s.jitter,
    }


def from_dict(d: dict[str, Any]) -> RetrySettings:
    return RetrySettings(**d)
