"""The JSON shape of a run, a wait token, a schedule and a queue: what
`cairn ... --json` prints, what the SDK's Run object (and token, schedule and
queue dicts) hold and what the HTTP API will return. One definition for all."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import payloads
from cairn.statuses import ATTEMPT_STATUS_NAMES, RUN_STATUS_NAMES, STEP_STATUS_NAMES
from cairn.v1 import common_pb2 as pb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wpb

WAIT_TOKEN_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("WAIT_TOKEN_STATUS_").lower()
    for v in wpb.WaitTokenStatus.DESCRIPTOR.values
    if v.number
}


def _time(msg: Any, field: str) -> str | None:
    if not msg.HasField(field):
        return None
    ts: Timestamp = getattr(msg, field)
    return ts.ToDatetime().isoformat(timespec="milliseconds") + "Z"


def _payload(msg: Any, field: str) -> Any:
    if not msg.HasField(field):
        return None
    p: pb.Payload = getattr(msg, field)
    try:
        return payloads.decode(p.data, p.encoding)
    except payloads.PayloadError:
        return {"encoding": p.encoding, "bytes": len(p.data)}


def _seconds(msg: Any, field: str) -> float | None:
    if not msg.HasField(field):
        return None
    return getattr(msg, field).ToTimedelta().total_seconds()


def _integral(value: Any) -> Any:
    """Struct numbers are doubles: whole ones become ints again, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def struct_to_dict(s: Struct | None) -> dict[str, Any]:
    """A google.protobuf Struct as a plain dict (whole numbers as ints); {} for None."""
    if s is None:
        return {}
    return _integral(json_format.MessageToDict(s))


def wait_to_dict(w: pb.WaitInfo) -> dict[str, Any]:
    """What a waiting run waits for."""
    return {
        "kind": w.kind,
        "position": w.position,
        "event_name": w.event_name or None,
        "event_key": w.event_key or None,
        "token_id": w.token_id or None,
        "child_run_ids": list(w.child_run_ids),
        "until": _time(w, "until"),
    }


def error_to_dict(msg: Any, field: str = "error") -> dict[str, Any] | None:
    """An ErrorInfo field as a dict, or None when unset."""
    if not msg.HasField(field):
        return None
    e: pb.ErrorInfo = getattr(msg, field)
    return {
        "type": e.type,
        "message": e.message,
        "stack_trace": e.stack_trace,
        "non_retryable": e.non_retryable,
    }


def step_to_dict(s: pb.Step) -> dict[str, Any]:
    return {
        "position": s.position,
        "name": s.name,
        "status": STEP_STATUS_NAMES.get(s.status, ""),
        "attempt": s.attempt,
        "tries": s.tries,
        "output": _payload(s, "output"),
        "error": error_to_dict(s),
        "recorded_at": _time(s, "recorded_at"),
    }


def attempt_to_dict(a: pb.Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "status": ATTEMPT_STATUS_NAMES.get(a.status, ""),
        "worker_id": a.worker_id,
        "worker_version": a.worker_version,
        "started_at": _time(a, "started_at"),
        "finished_at": _time(a, "finished_at"),
        "error": error_to_dict(a),
        "retry_delay": a.retry_delay.ToTimedelta().total_seconds() if a.HasField("retry_delay") else None,
    }


def run_to_dict(r: pb.Run) -> dict[str, Any]:
    """A run with its attempts and steps as plain JSON-ready data."""
    return {
        "id": r.id,
        "namespace": r.namespace,
        "task": r.task_id,
        "queue": r.queue,
        "status": RUN_STATUS_NAMES.get(r.status, ""),
        "input": _payload(r, "input"),
        "output": _payload(r, "output"),
        "error": error_to_dict(r),
        "idempotency_key": r.idempotency_key or None,
        "attempt_count": r.attempt_count,
        "created_at": _time(r, "created_at"),
        "updated_at": _time(r, "updated_at"),
        "started_at": _time(r, "started_at"),
        "finished_at": _time(r, "finished_at"),
        "next_attempt_at": _time(r, "next_attempt_at"),
        "attempts": [attempt_to_dict(a) for a in r.attempts],
        "steps": [step_to_dict(s) for s in r.steps],
        "events": [
            {
                "id": e.id,
                "type": e.type,
                "attempt": e.attempt,
                "details": e.details_json,
                "at": _time(e, "at"),
            }
            for e in r.events
        ],
        "parent_run_id": r.parent_run_id or None,
        "priority": r.priority,
        "tags": list(r.tags),
        "metadata": struct_to_dict(r.metadata) if r.HasField("metadata") else {},
        "child_run_ids": list(r.child_run_ids),
        "wait": wait_to_dict(r.wait) if r.HasField("wait") else None,
        "ttl": _seconds(r, "ttl"),
        "max_duration": _seconds(r, "max_duration"),
        "schedule_id": r.schedule_id or None,
        "concurrency_key": r.concurrency_key or None,
    }


def token_to_dict(t: wpb.WaitToken) -> dict[str, Any]:
    """A wait token as plain JSON-ready data; status is "pending", "completed" or
    "timed_out"."""
    return {
        "id": t.id,
        "namespace": t.namespace,
        "run_id": t.run_id or None,
        "status": WAIT_TOKEN_STATUS_NAMES.get(t.status, ""),
        "payload": _payload(t, "payload"),
        "created_at": _time(t, "created_at"),
        "completed_at": _time(t, "completed_at"),
        "timeout_at": _time(t, "timeout_at"),
    }


def schedule_to_dict(s: spb.Schedule) -> dict[str, Any]:
    """A schedule as plain JSON-ready data."""
    return {
        "id": s.id,
        "namespace": s.namespace,
        "task": s.task_id,
        "cron": s.cron,
        "timezone": s.timezone or "UTC",
        "payload": _payload(s, "payload"),
        "deduplication_key": s.deduplication_key or None,
        "paused": s.paused,
        "declared": s.declared,
        "next_fire_at": _time(s, "next_fire_at"),
        "last_fired_at": _time(s, "last_fired_at"),
        "last_run_id": s.last_run_id or None,
    }


def queue_to_dict(q: qpb.Queue) -> dict[str, Any]:
    """A queue as plain JSON-ready data. concurrency_limit and max_depth are 0 when
    there is no limit; rate_limit is {"limit": n, "period": seconds}, or None when
    the queue has no rate limit."""
    rate = None
    if q.HasField("rate_limit") and q.rate_limit.limit > 0:
        rate = {"limit": q.rate_limit.limit, "period": q.rate_limit.period.ToTimedelta().total_seconds()}
    return {
        "name": q.name,
        "namespace": q.namespace,
        "concurrency_limit": q.concurrency_limit,
        "rate_limit": rate,
        "max_depth": q.max_depth,
        "paused": q.paused,
        "depth": q.depth,
        "running": q.running,
        "managed": q.managed,
        "updated_at": _time(q, "updated_at"),
    }
