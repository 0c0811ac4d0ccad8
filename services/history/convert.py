"""Database rows of history's tables as protobuf messages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import payloads, retry_policy, tracing
from cairn.cron import Cron
from cairn.statuses import ATTEMPT_STATUS_BY_NAME, RUN_STATUS_BY_NAME, STEP_STATUS_BY_NAME
from cairn.v1 import common_pb2 as pb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from services.history.api.transition import RunOptions


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def error(value: dict[str, Any] | None) -> pb.ErrorInfo | None:
    if not value:
        return None
    return pb.ErrorInfo(
        type=value.get("type", ""),
        message=value.get("message", ""),
        stack_trace=value.get("stack_trace", ""),
        non_retryable=bool(value.get("non_retryable", False)),
    )


def error_dict(e: pb.ErrorInfo) -> dict[str, Any]:
    return {
        "type": e.type,
        "message": e.message,
        "stack_trace": e.stack_trace,
        "non_retryable": e.non_retryable,
    }


def payload(data: bytes | None, encoding: str | None) -> pb.Payload | None:
    if data is None:
        return None
    return pb.Payload(data=data, encoding=encoding or payloads.JSON)


def step(r: asyncpg.Record) -> pb.Step:
    return pb.Step(
        position=r["position"],
        name=r["name"],
        status=STEP_STATUS_BY_NAME[r["status"]],
        output=payload(r["output"], r["output_encoding"]),
        error=error(r["error"]),
        attempt=r["attempt"],
        tries=r["tries"],
        recorded_at=timestamp(r["recorded_at"]),
        try_errors=[e for e in map(error, r["try_errors"]) if e is not None],
    )


def attempt(r: asyncpg.Record) -> pb.Attempt:
    a = pb.Attempt(
        number=r["number"],
        status=ATTEMPT_STATUS_BY_NAME[r["status"]],
        worker_id=r["worker_id"],
        worker_version=r["worker_version"],
        started_at=timestamp(r["started_at"]),
        finished_at=timestamp(r["finished_at"]),
        error=error(r["error"]),
    )
    if r["retry_delay_ms"] is not None:
        a.retry_delay.CopyFrom(duration(r["retry_delay_ms"] / 1000))
    return a


def event(r: asyncpg.Record | Mapping[str, Any]) -> pb.RunEvent:
    return pb.RunEvent(
        id=r["id"],
        type=r["type"],
        attempt=r["attempt"],
        details_json=json.dumps(r["details"]),
        at=timestamp(r["at"]),
    )


def log_line(r: asyncpg.Record) -> pb.LogLine:
    """A 'log' event as the line it holds."""
    d = r["details"]
    position = d.get("step_position")
    return pb.LogLine(
        id=r["id"],
        attempt=r["attempt"],
        level=d.get("level", ""),
        message=d.get("message", ""),
        at=timestamp(r["at"]),
        step_position=-1 if position is None else position,
        step_name=d.get("step_name") or "",
        fields=struct(d.get("fields")),
        logger=d.get("logger", ""),
    )


def struct(value: dict[str, Any] | None) -> Struct:
    s = Struct()
    if value:
        s.update(value)
    return s


def struct_dict(value: Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def seconds(d: Duration) -> float:
    return d.ToTimedelta().total_seconds()


def options(o: pb.TriggerOptions) -> RunOptions:
    """Trigger options (validated by the frontend) as RunOptions."""
    return RunOptions(
        delay=seconds(o.delay) if o.HasField("delay") else 0.0,
        ttl=seconds(o.ttl) if o.HasField("ttl") else None,
        priority=o.priority,
        tags=list(o.tags),
        metadata=struct_dict(o.metadata) if o.HasField("metadata") else {},
        max_duration=seconds(o.max_duration) if o.HasField("max_duration") else None,
        concurrency_key=o.concurrency_key,
        traceparent=o.traceparent,
    )


def wait_info(w: asyncpg.Record | None, children: Sequence[Any]) -> pb.WaitInfo | None:
    if w is None:
        return None
    return pb.WaitInfo(
        kind=w["kind"],
        position=w["position"],
        event_name=w["event_name"] or "",
        event_key=w["event_key"] or "",
        token_id=w["token_id"] or "",
        child_run_ids=[str(c) for c in children] if w["kind"] == "children" else [],
        until=timestamp(w["timeout_at"]),
    )


def _ms(value: int | None) -> Duration | None:
    return duration(value / 1000) if value is not None else None


def run(
    r: asyncpg.Record,
    attempts: Sequence[asyncpg.Record] = (),
    steps: Sequence[asyncpg.Record] = (),
    events: Sequence[asyncpg.Record] = (),
    children: Sequence[Any] = (),
    wait: asyncpg.Record | None = None,
    wait_children: Sequence[Any] = (),
    *,
    with_input: bool = True,
) -> pb.Run:
    """A run row (with what GetRun adds) as a Run message; without its input
    when with_input is False (a trigger's answer: the caller sent it)."""
    return pb.Run(
        id=str(r["id"]),
        namespace=r["namespace"],
        task_id=r["task_id"],
        queue=r["queue"],
        status=RUN_STATUS_BY_NAME[r["status"]],
        input=payload(r["input"], r["input_encoding"]) if with_input else None,
        output=payload(r["output"], r["output_encoding"]),
        error=error(r["error"]),
        idempotency_key=r["idempotency_key"] or "",
        attempt_count=r["attempt_count"],
        retry=retry_policy.to_proto(retry_policy.from_dict(r["retry"])),
        created_at=timestamp(r["created_at"]),
        updated_at=timestamp(r["updated_at"]),
        started_at=timestamp(r["started_at"]),
        finished_at=timestamp(r["finished_at"]),
        next_attempt_at=timestamp(r["next_attempt_at"]),
        attempts=[attempt(a) for a in attempts],
        steps=[step(s) for s in steps],
        events=[event(e) for e in events],
        parent_run_id=str(r["parent_run_id"]) if r["parent_run_id"] else "",
        priority=r["priority"],
        tags=r["tags"],
        metadata=struct(r["metadata"]),
        child_run_ids=[str(c) for c in children],
        wait=wait_info(wait, wait_children),
        ttl=_ms(r["ttl_ms"]),
        max_duration=_ms(r["max_duration_ms"]),
        schedule_id=r["schedule_id"] or "",
        concurrency_key=r["concurrency_key"],
        replay_of=str(r["replay_of"]) if r.get("replay_of") else "",
        trace_id=tracing.trace_id_of(r.get("traceparent") or ""),
    )


def full_run(bundle: dict[str, Any]) -> pb.Run:
    """api.reads.get's result as a Run message."""
    return run(
        bundle["run"],
        bundle["attempts"],
        bundle["steps"],
        bundle["events"],
        bundle["children"],
        bundle["wait"],
        bundle["wait_children"],
    )


TOKEN_STATUS = {"pending": wspb.WAIT_TOKEN_STATUS_PENDING, "completed": wspb.WAIT_TOKEN_STATUS_COMPLETED}


def token(t: asyncpg.Record, now: Any) -> wspb.WaitToken:
    status = TOKEN_STATUS[t["status"]]
    if t["status"] == "pending" and t["timeout_at"] is not None and t["timeout_at"] <= now:
        status = wspb.WAIT_TOKEN_STATUS_TIMED_OUT
    return wspb.WaitToken(
        id=t["id"],
        namespace=t["namespace"],
        run_id=str(t["run_id"] or ""),
        status=status,
        payload=payload(t["payload"], t["payload_encoding"]),
        created_at=timestamp(t["created_at"]),
        completed_at=timestamp(t["completed_at"]),
        timeout_at=timestamp(t["timeout_at"]),
    )


def schedule(s: asyncpg.Record) -> spb.Schedule:
    return spb.Schedule(
        id=s["id"],
        namespace=s["namespace"],
        task_id=s["task_id"],
        cron=s["cron"],
        timezone=s["timezone"],
        payload=payload(s["payload"], s["payload_encoding"]),
        deduplication_key=s["dedup_key"],
        paused=s["paused"],
        declared=s["declared"],
        next_fire_at=timestamp(s["next_fire_at"]),
        last_fired_at=timestamp(s["last_fired_at"]),
        last_run_id=str(s["last_run_id"] or ""),
        upcoming=[ts for t in _upcoming(s["cron"], s["timezone"], s["next_fire_at"]) if (ts := timestamp(t))],
    )


UPCOMING_FIRES = 4  # shown after next_fire_at (Schedule.upcoming)


def _upcoming(expression: str, timezone: str, after: datetime | None) -> list[datetime]:
    """The fire times of a schedule after `after`."""
    if after is None:
        return []
    cron = Cron.parse(expression, timezone)
    times: list[datetime] = []
    for _ in range(UPCOMING_FIRES):
        after = cron.next_after(after)
        times.append(after)
    return times
