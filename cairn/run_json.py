"""The JSON shape of a run: what `cairn ... --json` prints, what the SDK's Run
object holds and what the HTTP API will return. One definition for all three."""
from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cairn import payloads
from cairn.statuses import ATTEMPT_STATUS_NAMES, RUN_STATUS_NAMES, STEP_STATUS_NAMES
from cairn.v1 import common_pb2 as pb


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


def error_to_dict(msg: Any, field: str = "error") -> dict[str, Any] | None:
    """An ErrorInfo field as a dict, or None when unset."""
    if not msg.HasField(field):
        return None
    e: pb.ErrorInfo = getattr(msg, field)
    return {"type": e.type, "message": e.message, "stack_trace": e.stack_trace,
            "non_retryable": e.non_retryable}


def step_to_dict(s: pb.Step) -> dict[str, Any]:
    return {"position": s.position, "name": s.name, "status": STEP_STATUS_NAMES.get(s.status, ""),
            "attempt": s.attempt, "tries": s.tries, "output": _payload(s, "output"),
            "error": error_to_dict(s), "recorded_at": _time(s, "recorded_at")}


def attempt_to_dict(a: pb.Attempt) -> dict[str, Any]:
    return {"number": a.number, "status": ATTEMPT_STATUS_NAMES.get(a.status, ""),
            "worker_id": a.worker_id, "worker_version": a.worker_version,
            "started_at": _time(a, "started_at"), "finished_at": _time(a, "finished_at"),
            "error": error_to_dict(a),
            "retry_delay": a.retry_delay.ToTimedelta().total_seconds()
            if a.HasField("retry_delay") else None}


def run_to_dict(r: pb.Run) -> dict[str, Any]:
    """A run with its attempts and steps as plain JSON-ready data."""
    return {
        "id": r.id, "namespace": r.namespace, "task": r.task_id, "queue": r.queue,
        "status": RUN_STATUS_NAMES.get(r.status, ""),
        "input": _payload(r, "input"), "output": _payload(r, "output"),
        "error": error_to_dict(r), "idempotency_key": r.idempotency_key or None,
        "attempt_count": r.attempt_count,
        "created_at": _time(r, "created_at"), "updated_at": _time(r, "updated_at"),
        "started_at": _time(r, "started_at"), "finished_at": _time(r, "finished_at"),
        "next_attempt_at": _time(r, "next_attempt_at"),
        "attempts": [attempt_to_dict(a) for a in r.attempts],
        "steps": [step_to_dict(s) for s in r.steps],
        "events": [{"id": e.id, "type": e.type, "attempt": e.attempt,
                    "details": e.details_json, "at": _time(e, "at")} for e in r.events],
    }
