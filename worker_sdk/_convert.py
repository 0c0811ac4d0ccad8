"""The one place protobuf messages become the SDK's dataclasses: runs (with
their attempts, steps, events and wait), wait tokens, schedules and queues.
Times become aware datetimes, durations timedeltas, statuses enums, payloads
their decoded JSON values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.struct_pb2 import Struct

from cairn import payloads
from cairn.statuses import ATTEMPT_STATUS_NAMES, RUN_STATUS_NAMES, STEP_STATUS_NAMES
from cairn.v1 import (
    common_pb2,
    queue_service_pb2,
    run_service_pb2,
    schedule_service_pb2,
    wait_service_pb2,
    worker_service_pb2,
)
from worker_sdk._policies import Queue
from worker_sdk._types import (
    Attempt,
    AttemptStatus,
    ErrorInfo,
    RateLimit,
    Run,
    RunEvent,
    RunStatus,
    RunUpdate,
    Schedule,
    Step,
    StepStatus,
    WaitInfo,
    WaitToken,
    WaitTokenStatus,
    WorkerInfo,
)

_TOKEN_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("WAIT_TOKEN_STATUS_").lower()
    for v in wait_service_pb2.WaitTokenStatus.DESCRIPTOR.values
    if v.number
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(msg: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime (to the microsecond, as
    Timestamp.ToDatetime, at half its cost: a watch converts one per update)."""
    if not msg.HasField(field):
        return None
    ts = getattr(msg, field)
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _duration(msg: Message, field: str) -> timedelta | None:
    if not msg.HasField(field):
        return None
    delta: timedelta = getattr(msg, field).ToTimedelta()
    return delta


def _payload(msg: Message, field: str) -> Any:
    """A payload field's decoded value; None when unset, and a description of it
    when it cannot be decoded (an encoding this SDK does not read). A children
    wait's ChildResults reads as a list of {run_id, status, output, error}."""
    if not msg.HasField(field):
        return None
    p: common_pb2.Payload = getattr(msg, field)
    if p.encoding == payloads.CHILD_RESULTS:
        try:
            return [_child_result_dict(r) for r in child_results(p.data).results]
        except ValueError:
            pass  # described below
    return payloads.read(p.data, p.encoding)


def payload_value(p: common_pb2.Payload) -> Any:
    """A payload's decoded value, or a description of it when this SDK cannot
    decode its encoding."""
    return payloads.read(p.data, p.encoding)


def child_results(data: bytes) -> worker_service_pb2.ChildResults:
    """A serialized ChildResults; ValueError when it is not one."""
    results = worker_service_pb2.ChildResults()
    try:
        results.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a serialized cairn.v1.ChildResults: {exc}") from None
    return results


def _child_result_dict(r: worker_service_pb2.ChildResult) -> dict[str, Any]:
    e = error(r)
    return {
        "run_id": r.run_id,
        "status": str(run_status(r.status)),
        "output": _payload(r, "output"),
        "error": None
        if e is None
        else {
            "type": e.type,
            "message": e.message,
            "stack_trace": e.stack_trace,
            "non_retryable": e.non_retryable,
        },
    }


def struct_to_dict(s: Struct) -> dict[str, Any]:
    """A google.protobuf Struct as a plain dict (whole numbers as ints)."""
    value: dict[str, Any] = payloads.whole_numbers(json_format.MessageToDict(s))
    return value


E = TypeVar("E", bound=StrEnum)


def _status(names: dict[int, str], value: int, enum: type[E]) -> E:
    """The status of a status number; UNSPECIFIED when unset or newer than this SDK."""
    try:
        return enum(names.get(value, ""))
    except ValueError:
        return enum("")


def run_status(value: int) -> RunStatus:
    """A protocol RunStatus number as the SDK's RunStatus (UNSPECIFIED when unknown)."""
    return _status(RUN_STATUS_NAMES, value, RunStatus)


def error_info(e: common_pb2.ErrorInfo) -> ErrorInfo:
    return ErrorInfo(type=e.type, message=e.message, stack_trace=e.stack_trace, non_retryable=e.non_retryable)


def error(msg: Message, field: str = "error") -> ErrorInfo | None:
    """An ErrorInfo field, or None when unset."""
    if not msg.HasField(field):
        return None
    return error_info(getattr(msg, field))


def attempt(a: common_pb2.Attempt) -> Attempt:
    return Attempt(
        number=a.number,
        status=_status(ATTEMPT_STATUS_NAMES, a.status, AttemptStatus),
        worker_id=a.worker_id,
        worker_version=a.worker_version,
        started_at=_time(a, "started_at"),
        finished_at=_time(a, "finished_at"),
        error=error(a),
        retry_delay=_duration(a, "retry_delay"),
    )


def step(s: common_pb2.Step) -> Step:
    return Step(
        position=s.position,
        name=s.name,
        status=_status(STEP_STATUS_NAMES, s.status, StepStatus),
        attempt=s.attempt,
        tries=s.tries,
        output=_payload(s, "output"),
        error=error(s),
        recorded_at=_time(s, "recorded_at"),
        try_errors=tuple(error_info(e) for e in s.try_errors),
    )


def wait_info(w: common_pb2.WaitInfo) -> WaitInfo:
    return WaitInfo(
        kind=w.kind,
        position=w.position,
        event_name=w.event_name or None,
        event_key=w.event_key or None,
        token_id=w.token_id or None,
        child_run_ids=list(w.child_run_ids),
        until=_time(w, "until"),
    )


def run(r: common_pb2.Run) -> Run[Any]:
    """A run with its attempts, steps, events and wait."""
    return Run(
        id=r.id,
        task=r.task_id,
        status=run_status(r.status),
        output=_payload(r, "output"),
        error=error(r),
        attempts=[attempt(a) for a in r.attempts],
        steps=[step(s) for s in r.steps],
        namespace=r.namespace,
        queue=r.queue,
        input=_payload(r, "input"),
        idempotency_key=r.idempotency_key or None,
        attempt_count=r.attempt_count,
        created_at=_time(r, "created_at"),
        updated_at=_time(r, "updated_at"),
        started_at=_time(r, "started_at"),
        finished_at=_time(r, "finished_at"),
        next_attempt_at=_time(r, "next_attempt_at"),
        events=[run_event(e) for e in r.events],
        parent_run_id=r.parent_run_id or None,
        priority=r.priority,
        tags=list(r.tags),
        metadata=struct_to_dict(r.metadata) if r.HasField("metadata") else {},
        child_run_ids=list(r.child_run_ids),
        wait=wait_info(r.wait) if r.HasField("wait") else None,
        ttl=_duration(r, "ttl"),
        max_duration=_duration(r, "max_duration"),
        schedule_id=r.schedule_id or None,
        concurrency_key=r.concurrency_key or None,
        replay_of=r.replay_of or None,
        trace_id=r.trace_id or None,
    )


def run_event(e: common_pb2.RunEvent) -> RunEvent:
    """One entry of a run's event log."""
    return RunEvent(id=e.id, type=e.type, attempt=e.attempt, details=e.details_json, at=_time(e, "at"))


class RunUpdates:
    """Converts the updates of one watch: updates in a row that carry the same
    run share one Run, since converting the run costs several times the rest
    of an update (a run's steps and log lines leave it unchanged)."""

    def __init__(self) -> None:
        self._last: tuple[common_pb2.Run, Run[Any]] | None = None

    def __call__(self, u: run_service_pb2.RunUpdate) -> RunUpdate:
        last = self._last
        if last is None or last[0] != u.run:
            last = self._last = (u.run, run(u.run))
        return RunUpdate(event=run_event(u.event), run=last[1], done=u.done)


def token(t: wait_service_pb2.WaitToken) -> WaitToken:
    return WaitToken(
        id=t.id,
        timeout_at=_time(t, "timeout_at"),
        status=_status(_TOKEN_STATUS_NAMES, t.status, WaitTokenStatus),
        run_id=t.run_id or None,
        payload=_payload(t, "payload"),
        created_at=_time(t, "created_at"),
        completed_at=_time(t, "completed_at"),
        namespace=t.namespace,
    )


def schedule(s: schedule_service_pb2.Schedule) -> Schedule:
    return Schedule(
        id=s.id,
        task=s.task_id,
        cron=s.cron,
        timezone=s.timezone or "UTC",
        payload=_payload(s, "payload"),
        deduplication_key=s.deduplication_key or None,
        paused=s.paused,
        declared=s.declared,
        next_fire_at=_time(s, "next_fire_at"),
        last_fired_at=_time(s, "last_fired_at"),
        last_run_id=s.last_run_id or None,
        namespace=s.namespace,
    )


def queue(q: queue_service_pb2.Queue) -> Queue:
    """A queue with its settings (None for no limit) and counts."""
    rate = None
    if q.HasField("rate_limit") and q.rate_limit.limit > 0:
        rate = RateLimit(limit=q.rate_limit.limit, period=q.rate_limit.period.ToTimedelta())
    return Queue(
        name=q.name,
        concurrency_limit=q.concurrency_limit or None,
        rate_limit=rate,
        max_depth=q.max_depth or None,
        paused=q.paused,
        depth=q.depth,
        running=q.running,
        managed=q.managed,
        updated_at=_time(q, "updated_at"),
        namespace=q.namespace,
    )


def worker_info(w: queue_service_pb2.WorkerInfo) -> WorkerInfo:
    """A worker as ListWorkers reports it."""
    return WorkerInfo(
        worker_id=w.worker_id,
        version=w.version,
        task_ids=list(w.task_ids),
        slots=w.slots,
        registered_at=_time(w, "registered_at"),
        last_seen_at=_time(w, "last_seen_at"),
        connected=w.connected,
        running=w.running,
    )
