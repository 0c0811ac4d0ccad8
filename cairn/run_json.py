"""The JSON shape of the protocol's resources, made from their protobuf messages:
a run (with its attempts, steps, events, wait and children), a wait token, a
schedule, a queue and where an event went.

This is what `cairn ... --json` prints, and what the HTTP API serves: one
converter, protobuf message -> plain dict of JSON values, with no model of its
own in between. A run has two forms: run_to_dict, the whole run (RunJSON, for
GetRun, WaitRun, CancelRun and a trigger's answer), and run_summary_to_dict, a
run as lists show it (RunSummaryJSON: every key of RunJSON except "attempts",
"steps" and "events", which ListRuns does not load; a list must not claim a
run has none). The TypedDicts below only name the keys and value types of
those dicts for the type checker; at run time every result is an ordinary
dict that `json.dumps` accepts as is.

The shape: snake_case keys; statuses as lowercase names ("completed",
"timed_out"); times as ISO-8601 UTC strings with milliseconds and a "Z";
durations as float seconds; a field the message leaves unset (a missing time,
error, wait, empty id) as null. Payloads by encoding (cairn.payloads):
- json/plain: the JSON value it encodes (empty data: null);
- binary/plain: {"encoding": "binary/plain", "bytes": n, "base64": "..."}, the
  data whole in base64, so that --json loses nothing (a payload is at most
  MAX_PAYLOAD_BYTES);
- proto/cairn.v1.ChildResults (a children wait's step output): a list with one
  {"run_id", "status" (lowercase), "output" (rendered like any payload),
  "error" (an error dict or null)} per child, in the wait's order;
- anything else, or data that cannot be read: {"encoding": ..., "bytes": n}.
An event's "details" is the JSON object history recorded (details_json
parsed); text that is not JSON is kept as a string."""

from __future__ import annotations

import base64
import json
from typing import Any, TypedDict

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cairn import payloads
from cairn.statuses import (
    ATTEMPT_STATUS_NAMES,
    RUN_STATUS_NAMES,
    STEP_STATUS_NAMES,
    WAIT_TOKEN_STATUS_NAMES,
)
from cairn.v1 import common_pb2 as pb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wpb
from cairn.v1 import worker_service_pb2 as wkpb

__all__ = [
    "AttemptJSON",
    "ChildResultJSON",
    "ErrorJSON",
    "EventJSON",
    "QueueJSON",
    "RateLimitJSON",
    "RunJSON",
    "RunSummaryJSON",
    "RunUpdateJSON",
    "ScheduleJSON",
    "SendEventJSON",
    "StepJSON",
    "TokenJSON",
    "WaitJSON",
    "WorkerJSON",
    "attempt_to_dict",
    "child_results_to_list",
    "error_to_dict",
    "event_to_dict",
    "payload_to_json",
    "queue_to_dict",
    "run_summary_to_dict",
    "run_to_dict",
    "run_update_to_dict",
    "schedule_to_dict",
    "send_event_to_dict",
    "step_to_dict",
    "struct_to_dict",
    "token_to_dict",
    "wait_to_dict",
    "worker_to_dict",
]

JSONValue = Any  # whatever json.loads returns: a payload, a metadata value


class ErrorJSON(TypedDict):
    """An error of a run, attempt or step."""

    type: str
    message: str
    stack_trace: str
    non_retryable: bool


class AttemptJSON(TypedDict):
    """One execution of the task function on a worker."""

    number: int
    status: str
    worker_id: str
    worker_version: str
    started_at: str | None
    finished_at: str | None
    error: ErrorJSON | None
    retry_delay: float | None  # the backoff before the next attempt, when there is one


class StepJSON(TypedDict):
    """A checkpointed step (or a resolved wait) at its position in the run."""

    position: int
    name: str
    status: str
    attempt: int
    tries: int
    output: JSONValue
    error: ErrorJSON | None
    try_errors: list[ErrorJSON]  # the errors of the failed tries before the last, oldest first
    recorded_at: str | None


class ChildResultJSON(TypedDict):
    """How one child of a children wait ended (a ChildResults payload's item)."""

    run_id: str
    status: str
    output: JSONValue
    error: ErrorJSON | None


class EventJSON(TypedDict):
    """An entry of the run's history (created, attempt started, ...)."""

    id: int
    type: str
    attempt: int
    details: JSONValue  # the recorded details: a JSON object (a string only if not JSON)
    at: str | None


class WaitJSON(TypedDict):
    """What a waiting run waits for: kind is "sleep", "event", "token" or "children"."""

    kind: str
    position: int
    event_name: str | None
    event_key: str | None
    token_id: str | None
    child_run_ids: list[str]
    until: str | None  # a sleep's end, or the wait's timeout


class RunSummaryJSON(TypedDict):
    """A run as a list shows it: RunJSON without attempts, steps and events."""

    id: str
    namespace: str
    task: str
    queue: str
    status: str
    input: JSONValue
    output: JSONValue
    error: ErrorJSON | None
    idempotency_key: str | None
    attempt_count: int
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    next_attempt_at: str | None
    parent_run_id: str | None
    priority: int
    tags: list[str]
    metadata: dict[str, JSONValue]
    child_run_ids: list[str]
    wait: WaitJSON | None
    ttl: float | None
    max_duration: float | None
    schedule_id: str | None
    concurrency_key: str | None
    replay_of: str | None
    trace_id: str | None


class RunJSON(RunSummaryJSON):
    """A run with its attempts, steps, events, wait and child runs."""

    attempts: list[AttemptJSON]
    steps: list[StepJSON]
    events: list[EventJSON]


class LogLineJSON(TypedDict):
    """A line a run's task logged (ListRunLogs; a "log" event's details hold the same)."""

    id: int
    attempt: int
    level: str
    message: str
    logger: str
    at: str | None
    step_position: int | None  # None outside a step
    step_name: str | None
    fields: dict[str, JSONValue]


class RunUpdateJSON(TypedDict):
    """One change of a watched run (WatchRun, WatchRuns, the HTTP event stream):
    the event, the run right after it as a summary (its input left out), and
    done, true on the update that ends the run."""

    event: EventJSON
    run: RunSummaryJSON
    done: bool


class TokenJSON(TypedDict):
    """A wait token; status is "pending", "completed" or "timed_out"."""

    id: str
    namespace: str
    run_id: str | None
    status: str
    payload: JSONValue
    created_at: str | None
    completed_at: str | None
    timeout_at: str | None


class ScheduleJSON(TypedDict):
    """A cron schedule of a task; declared is true for one declared with the task."""

    id: str
    namespace: str
    task: str
    cron: str
    timezone: str
    payload: JSONValue
    deduplication_key: str | None
    paused: bool
    declared: bool
    next_fire_at: str | None
    upcoming: list[str]  # the fire times after next_fire_at
    last_fired_at: str | None
    last_run_id: str | None


class RateLimitJSON(TypedDict):
    """At most `limit` attempt starts per `period` seconds."""

    limit: int
    period: float


class QueueJSON(TypedDict):
    """A queue's settings (0 is "no limit"), depth (queued runs) and running runs;
    managed is true once its settings were changed through the API."""

    name: str
    namespace: str
    concurrency_limit: int
    rate_limit: RateLimitJSON | None
    max_depth: int
    paused: bool
    depth: int
    running: int
    managed: bool
    updated_at: str | None


class WorkerJSON(TypedDict):
    """A worker as matching knows it: last_seen_at is its last registration or
    poll (refreshed at most every few seconds); connected when that was within
    cairn.limits.WORKER_CONNECTED_SECONDS."""

    worker_id: str
    version: str
    task_ids: list[str]
    slots: int
    running: int  # attempts executing now: slots in use (slots - running are free)
    registered_at: str | None
    last_seen_at: str | None
    connected: bool


class SendEventJSON(TypedDict):
    """Where an event went: the runs whose wait it resolved, and whether it was
    kept for the run it was sent to because that run is not waiting for it yet."""

    delivered_run_ids: list[str]
    buffered: bool


def _time(ts: Timestamp) -> str:
    return ts.ToDatetime().isoformat(timespec="milliseconds") + "Z"


format_time = _time  # for the other resources' converters (key_json.py)


def _seconds(d: Duration) -> float:
    return d.ToTimedelta().total_seconds()


def _described(p: pb.Payload) -> dict[str, JSONValue]:
    return {"encoding": p.encoding, "bytes": len(p.data)}


def payload_to_json(p: pb.Payload) -> JSONValue:
    """A payload as JSON, by its encoding (the module's docstring)."""
    encoding = p.encoding or payloads.JSON
    if encoding == payloads.BINARY:
        return {
            "encoding": payloads.BINARY,
            "bytes": len(p.data),
            "base64": base64.b64encode(p.data).decode(),
        }
    if encoding == payloads.CHILD_RESULTS:
        results = wkpb.ChildResults()
        try:
            results.ParseFromString(p.data)
        except DecodeError:
            return _described(p)
        return child_results_to_list(results)
    try:
        return payloads.decode(p.data, encoding)
    except payloads.PayloadError:
        return _described(p)


def child_results_to_list(results: wkpb.ChildResults) -> list[ChildResultJSON]:
    """A children wait's results, one per child in order."""
    return [
        {
            "run_id": c.run_id,
            "status": RUN_STATUS_NAMES.get(c.status, ""),
            "output": payload_to_json(c.output) if c.HasField("output") else None,
            "error": error_to_dict(c.error) if c.HasField("error") else None,
        }
        for c in results.results
    ]


def triggered_run(response: rpb.TriggerRunResponse, sent: pb.Payload) -> pb.Run:
    """A trigger's run, whole. The server does not send a new run's input back
    (the caller has it), so it is the payload sent; a run found by its
    idempotency key carries its own input."""
    if response.existing or response.run.HasField("input"):
        return response.run
    run = pb.Run()
    run.CopyFrom(response.run)
    run.input.CopyFrom(sent)
    return run


def struct_to_dict(s: Struct | None) -> dict[str, JSONValue]:
    """A google.protobuf Struct as a plain dict (whole numbers as ints); {} for None."""
    if s is None:
        return {}
    out: dict[str, JSONValue] = payloads.whole_numbers(json_format.MessageToDict(s))
    return out


def error_to_dict(e: pb.ErrorInfo) -> ErrorJSON:
    """An ErrorInfo."""
    return {
        "type": e.type,
        "message": e.message,
        "stack_trace": e.stack_trace,
        "non_retryable": e.non_retryable,
    }


def wait_to_dict(w: pb.WaitInfo) -> WaitJSON:
    """What a waiting run waits for."""
    return {
        "kind": w.kind,
        "position": w.position,
        "event_name": w.event_name or None,
        "event_key": w.event_key or None,
        "token_id": w.token_id or None,
        "child_run_ids": list(w.child_run_ids),
        "until": _time(w.until) if w.HasField("until") else None,
    }


def step_to_dict(s: pb.Step) -> StepJSON:
    """A recorded step."""
    return {
        "position": s.position,
        "name": s.name,
        "status": STEP_STATUS_NAMES.get(s.status, ""),
        "attempt": s.attempt,
        "tries": s.tries,
        "output": payload_to_json(s.output) if s.HasField("output") else None,
        "error": error_to_dict(s.error) if s.HasField("error") else None,
        "try_errors": [error_to_dict(e) for e in s.try_errors],
        "recorded_at": _time(s.recorded_at) if s.HasField("recorded_at") else None,
    }


def attempt_to_dict(a: pb.Attempt) -> AttemptJSON:
    """An attempt."""
    return {
        "number": a.number,
        "status": ATTEMPT_STATUS_NAMES.get(a.status, ""),
        "worker_id": a.worker_id,
        "worker_version": a.worker_version,
        "started_at": _time(a.started_at) if a.HasField("started_at") else None,
        "finished_at": _time(a.finished_at) if a.HasField("finished_at") else None,
        "error": error_to_dict(a.error) if a.HasField("error") else None,
        "retry_delay": _seconds(a.retry_delay) if a.HasField("retry_delay") else None,
    }


def _details(text: str) -> JSONValue:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def event_to_dict(e: pb.RunEvent) -> EventJSON:
    """An entry of a run's history; details as a JSON value (the module's docstring)."""
    return {
        "id": e.id,
        "type": e.type,
        "attempt": e.attempt,
        "details": _details(e.details_json),
        "at": _time(e.at) if e.HasField("at") else None,
    }


def log_line_to_dict(line: pb.LogLine) -> LogLineJSON:
    """A stored log line."""
    inside = line.step_position >= 0
    return {
        "id": line.id,
        "attempt": line.attempt,
        "level": line.level,
        "message": line.message,
        "logger": line.logger,
        "at": _time(line.at) if line.HasField("at") else None,
        "step_position": line.step_position if inside else None,
        "step_name": line.step_name if inside else None,
        "fields": struct_to_dict(line.fields),
    }


def log_line_from_event(event: EventJSON) -> LogLineJSON:
    """The line a "log" event holds (as WatchRun delivers it), in ListRunLogs' shape."""
    d = event["details"] if isinstance(event["details"], dict) else {}
    fields = d.get("fields")
    position = d.get("step_position")
    return {
        "id": event["id"],
        "attempt": event["attempt"],
        "level": str(d.get("level", "")),
        "message": str(d.get("message", "")),
        "logger": str(d.get("logger", "")),
        "at": event["at"],
        "step_position": position if isinstance(position, int) else None,
        "step_name": str(d["step_name"]) if d.get("step_name") else None,
        "fields": fields if isinstance(fields, dict) else {},
    }


def run_summary_to_dict(r: pb.Run) -> RunSummaryJSON:
    """A run as a list shows it (ListRuns answers): every key of run_to_dict but
    "attempts", "steps" and "events"."""
    return {
        "id": r.id,
        "namespace": r.namespace,
        "task": r.task_id,
        "queue": r.queue,
        "status": RUN_STATUS_NAMES.get(r.status, ""),
        "input": payload_to_json(r.input) if r.HasField("input") else None,
        "output": payload_to_json(r.output) if r.HasField("output") else None,
        "error": error_to_dict(r.error) if r.HasField("error") else None,
        "idempotency_key": r.idempotency_key or None,
        "attempt_count": r.attempt_count,
        "created_at": _time(r.created_at) if r.HasField("created_at") else None,
        "updated_at": _time(r.updated_at) if r.HasField("updated_at") else None,
        "started_at": _time(r.started_at) if r.HasField("started_at") else None,
        "finished_at": _time(r.finished_at) if r.HasField("finished_at") else None,
        "next_attempt_at": _time(r.next_attempt_at) if r.HasField("next_attempt_at") else None,
        "parent_run_id": r.parent_run_id or None,
        "priority": r.priority,
        "tags": list(r.tags),
        "metadata": struct_to_dict(r.metadata) if r.HasField("metadata") else {},
        "child_run_ids": list(r.child_run_ids),
        "wait": wait_to_dict(r.wait) if r.HasField("wait") else None,
        "ttl": _seconds(r.ttl) if r.HasField("ttl") else None,
        "max_duration": _seconds(r.max_duration) if r.HasField("max_duration") else None,
        "schedule_id": r.schedule_id or None,
        "concurrency_key": r.concurrency_key or None,
        "replay_of": r.replay_of or None,
        "trace_id": r.trace_id or None,
    }


def run_to_dict(r: pb.Run) -> RunJSON:
    """A run with its attempts, steps, events, wait and child runs: the summary's
    keys plus "attempts", "steps" and "events" (empty lists when the message
    carries none; a list of runs uses run_summary_to_dict instead)."""
    summary = run_summary_to_dict(r)
    run: RunJSON = {
        **summary,
        "attempts": [attempt_to_dict(a) for a in r.attempts],
        "steps": [step_to_dict(s) for s in r.steps],
        "events": [event_to_dict(e) for e in r.events],
    }
    return run


def run_update_to_dict(u: rpb.RunUpdate) -> RunUpdateJSON:
    """An update of a watch: its event, the run after it (run_summary_to_dict),
    and whether the run has ended."""
    return {"event": event_to_dict(u.event), "run": run_summary_to_dict(u.run), "done": u.done}


def token_to_dict(t: wpb.WaitToken) -> TokenJSON:
    """A wait token."""
    return {
        "id": t.id,
        "namespace": t.namespace,
        "run_id": t.run_id or None,
        "status": WAIT_TOKEN_STATUS_NAMES.get(t.status, ""),
        "payload": payload_to_json(t.payload) if t.HasField("payload") else None,
        "created_at": _time(t.created_at) if t.HasField("created_at") else None,
        "completed_at": _time(t.completed_at) if t.HasField("completed_at") else None,
        "timeout_at": _time(t.timeout_at) if t.HasField("timeout_at") else None,
    }


def schedule_to_dict(s: spb.Schedule) -> ScheduleJSON:
    """A schedule; an unset time zone is "UTC"."""
    return {
        "id": s.id,
        "namespace": s.namespace,
        "task": s.task_id,
        "cron": s.cron,
        "timezone": s.timezone or "UTC",
        "payload": payload_to_json(s.payload) if s.HasField("payload") else None,
        "deduplication_key": s.deduplication_key or None,
        "paused": s.paused,
        "declared": s.declared,
        "next_fire_at": _time(s.next_fire_at) if s.HasField("next_fire_at") else None,
        "upcoming": [_time(t) for t in s.upcoming],
        "last_fired_at": _time(s.last_fired_at) if s.HasField("last_fired_at") else None,
        "last_run_id": s.last_run_id or None,
    }


def queue_to_dict(q: qpb.Queue) -> QueueJSON:
    """A queue. rate_limit is null when the queue has none (a limit of 0 is none)."""
    rate: RateLimitJSON | None = None
    if q.HasField("rate_limit") and q.rate_limit.limit > 0:
        rate = {"limit": q.rate_limit.limit, "period": _seconds(q.rate_limit.period)}
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
        "updated_at": _time(q.updated_at) if q.HasField("updated_at") else None,
    }


def worker_to_dict(w: qpb.WorkerInfo) -> WorkerJSON:
    """A worker (ListWorkers)."""
    return {
        "worker_id": w.worker_id,
        "version": w.version,
        "task_ids": list(w.task_ids),
        "slots": w.slots,
        "running": w.running,
        "registered_at": _time(w.registered_at) if w.HasField("registered_at") else None,
        "last_seen_at": _time(w.last_seen_at) if w.HasField("last_seen_at") else None,
        "connected": w.connected,
    }


def send_event_to_dict(r: wpb.SendEventResponse) -> SendEventJSON:
    """Where a sent event went."""
    return {"delivered_run_ids": list(r.delivered_run_ids), "buffered": r.buffered}
