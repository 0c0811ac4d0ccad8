"""Database rows of history's tables as protobuf messages."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import retry_policy
from cairn.statuses import ATTEMPT_STATUS_BY_NAME, RUN_STATUS_BY_NAME, STEP_STATUS_BY_NAME
from cairn.v1 import common_pb2 as pb


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
    return pb.ErrorInfo(type=value.get("type", ""), message=value.get("message", ""),
                        stack_trace=value.get("stack_trace", ""),
                        non_retryable=bool(value.get("non_retryable", False)))


def error_dict(e: pb.ErrorInfo) -> dict[str, Any]:
    return {"type": e.type, "message": e.message, "stack_trace": e.stack_trace,
            "non_retryable": e.non_retryable}


def payload(data: bytes | None, encoding: str | None) -> pb.Payload | None:
    if data is None:
        return None
    return pb.Payload(data=data, encoding=encoding or "json/plain")


def step(r: asyncpg.Record) -> pb.Step:
    return pb.Step(position=r["position"], name=r["name"], status=STEP_STATUS_BY_NAME[r["status"]],
                   output=payload(r["output"], r["output_encoding"]), error=error(r["error"]),
                   attempt=r["attempt"], tries=r["tries"], recorded_at=timestamp(r["recorded_at"]))


def attempt(r: asyncpg.Record) -> pb.Attempt:
    a = pb.Attempt(number=r["number"], status=ATTEMPT_STATUS_BY_NAME[r["status"]],
                   worker_id=r["worker_id"], worker_version=r["worker_version"],
                   started_at=timestamp(r["started_at"]), finished_at=timestamp(r["finished_at"]),
                   error=error(r["error"]))
    if r["retry_delay_ms"] is not None:
        a.retry_delay.CopyFrom(duration(r["retry_delay_ms"] / 1000))
    return a


def event(r: asyncpg.Record) -> pb.RunEvent:
    return pb.RunEvent(id=r["id"], type=r["type"], attempt=r["attempt"],
                       details_json=json.dumps(r["details"]), at=timestamp(r["at"]))


def run(r: asyncpg.Record, attempts: list[asyncpg.Record] = (),
        steps: list[asyncpg.Record] = (), events: list[asyncpg.Record] = ()) -> pb.Run:
    return pb.Run(
        id=str(r["id"]), namespace=r["namespace"], task_id=r["task_id"], queue=r["queue"],
        status=RUN_STATUS_BY_NAME[r["status"]], input=payload(r["input"], r["input_encoding"]),
        output=payload(r["output"], r["output_encoding"]), error=error(r["error"]),
        idempotency_key=r["idempotency_key"] or "", attempt_count=r["attempt_count"],
        retry=retry_policy.to_proto(retry_policy.from_dict(r["retry"])),
        created_at=timestamp(r["created_at"]), updated_at=timestamp(r["updated_at"]),
        started_at=timestamp(r["started_at"]), finished_at=timestamp(r["finished_at"]),
        next_attempt_at=timestamp(r["next_attempt_at"]),
        attempts=[attempt(a) for a in attempts], steps=[step(s) for s in steps],
        events=[event(e) for e in events])
