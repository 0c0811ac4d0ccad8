"""Checks on every external request, before anything is routed or written.
Each failure is INVALID_ARGUMENT with a message that names the field. The checks
are pure: they never change a request (the namespace is filled in before them,
by the frontend's defaulting interceptor). Every limit comes from cairn.limits."""

from __future__ import annotations

import json
import uuid
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from cairn import payloads, retry_policy, tracing
from cairn.cron import Cron
from cairn.limits import (
    ID_RE,
    LOG_LEVELS,
    MAX_ATTEMPT_TOKEN_CHARS,
    MAX_BATCH,
    MAX_CONCURRENCY_KEY_CHARS,
    MAX_DELAY_SECONDS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ERROR_TYPE_CHARS,
    MAX_KEY_CHARS,
    MAX_LOG_FIELDS_BYTES,
    MAX_LOG_MESSAGE_CHARS,
    MAX_METADATA_BYTES,
    MAX_NAME_CHARS,
    MAX_OUTPUTS_PER_APPEND,
    MAX_PAGE_SIZE,
    MAX_PAYLOAD_BYTES,
    MAX_POLL_ATTEMPTS,
    MAX_PRIORITY,
    MAX_QUEUE_CONCURRENCY,
    MAX_QUEUE_DEPTH,
    MAX_RATE_LIMIT,
    MAX_RATE_PERIOD_SECONDS,
    MAX_REASON_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_STACK_TRACE_CHARS,
    MAX_STREAM_CHUNK_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TOKEN_ID_CHARS,
    MAX_TRY_ERRORS,
    MAX_VERSION_CHARS,
    MAX_WAIT,
    MAX_WORKER_ID_CHARS,
    MIN_PRIORITY,
    NAMESPACE_RE,
    REQUEST_ID_RE,
    STREAM_NAME_RE,
)
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import ServiceError, invalid

ECHO_CHARS = 64  # of a refused value quoted in its error message


def quoted(value: str) -> str:
    """A refused value as its message quotes it: at most ECHO_CHARS of it, so an
    answer never carries the input whole (a 20 KB id would overflow the
    response's metadata)."""
    if len(value) <= ECHO_CHARS:
        return repr(value)
    return f"{value[:ECHO_CHARS]!r}... ({len(value)} characters)"


def namespace(value: str) -> None:
    """A namespace name (empty means the default one)."""
    if value and not NAMESPACE_RE.match(value):
        raise invalid(f"namespace: {quoted(value)} must be 1-64 letters, digits, '_', '.' or '-'")


def identifier(field: str, value: str) -> None:
    if not value:
        raise invalid(f"{field}: required")
    if not ID_RE.match(value):
        raise invalid(
            f"{field}: {quoted(value)} must be 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit"
        )


def run_id(value: str, field: str = "run_id") -> None:
    if not value:
        raise invalid(f"{field}: required")
    try:
        uuid.UUID(value)
    except ValueError:
        raise invalid(f"{field}: {quoted(value)} is not a valid run id (a UUID)") from None


def payload(field: str, p: cpb.Payload, *, required: bool = False) -> None:
    """A payload a client or worker sends (the rules are cairn.payloads'): an
    accepted encoding, json/plain data that is JSON text (non-empty when
    `required`), at most MAX_PAYLOAD_BYTES. A bad encoding names
    `{field}.encoding`, bad data `{field}`."""
    if len(p.data) > MAX_PAYLOAD_BYTES:
        raise invalid(f"{field}: {len(p.data)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")
    try:
        payloads.validate(p.data, p.encoding, required=required)
    except payloads.PayloadError as exc:
        where = f"{field}.encoding" if exc.part == "encoding" else field
        raise invalid(f"{where}: {exc}") from None


def text(field: str, value: str, limit: int, required: bool = False) -> None:
    if required and not value:
        raise invalid(f"{field}: required")
    if len(value) > limit:
        raise invalid(f"{field}: longer than {limit} characters")
    if "\x00" in value:
        raise invalid(f"{field}: must not contain NUL characters (PostgreSQL cannot store them)")


def _seconds(d: Any) -> float:
    """A Duration in seconds, whatever its size (ToTimedelta overflows past
    999,999,999 days, which a request may carry)."""
    return float(d.seconds) + float(d.nanos) / 1e9


class Undecodable:
    """A request whose bytes are not a message of its method's type (e.g. nested
    past protobuf's depth limit): what the frontend's deserializer hands on
    instead of raising, so that it is refused as INVALID_ARGUMENT, not UNKNOWN."""

    def __init__(self, type_name: str, why: str) -> None:
        self.type_name = type_name
        self.why = why

    def refusal(self) -> ServiceError:
        reason = (
            "nested too deeply (at most 100 levels)"
            if "Depth" in self.why
            else "not a valid protobuf message"
        )
        return invalid(f"request: cannot be read as a {self.type_name}: {reason}")


def time_ok(t: timestamp_pb2.Timestamp) -> bool:
    """A Timestamp between 1970 and 9999 whose nanos are a fraction of a second
    (what history turns into a datetime; anything else failed as INTERNAL)."""
    return 0 <= t.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= t.nanos <= 999_999_999


def wait_seconds(field: str, msg: Any, default: float) -> float:
    """A Duration field in seconds, 0 to 60 (`default` when unset)."""
    if not msg.HasField(field):
        return default
    seconds = _seconds(getattr(msg, field))
    if seconds < 0 or seconds > MAX_WAIT:
        raise invalid(f"{field}: must be between 0 and {MAX_WAIT:g} seconds")
    return seconds


def duration(
    field: str, msg: Any, name: str, *, allow_zero: bool = False, limit: float = MAX_DELAY_SECONDS
) -> None:
    """A Duration field that must be positive (or zero) and at most `limit` seconds."""
    if not msg.HasField(name):
        return
    seconds = _seconds(getattr(msg, name))
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds > limit:
        raise invalid(
            f"{field}: must be {'at least 0' if allow_zero else 'more than 0'} "
            f"and at most {limit:g} seconds, got {seconds:g}"
        )


def struct_json(field: str, value: Any) -> str:
    """A Struct as the JSON text stored for it; INVALID_ARGUMENT for what JSON
    or PostgreSQL's jsonb cannot hold (NaN, infinity, NUL characters)."""
    try:
        text = json.dumps(json_format.MessageToDict(value), allow_nan=False)
    except ValueError:
        raise invalid(f"{field}: NaN and infinity are not JSON values") from None
    if "\\u0000" in text:
        raise invalid(f"{field}: must not contain NUL characters (PostgreSQL cannot store them)")
    return text


def metadata(field: str, value: Any) -> None:
    size = len(struct_json(field, value))
    if size > MAX_METADATA_BYTES:
        raise invalid(f"{field}: {size} bytes of JSON exceeds the limit of {MAX_METADATA_BYTES}")


def options(field: str, o: cpb.TriggerOptions) -> None:
    duration(f"{field}.delay", o, "delay", allow_zero=True)
    duration(f"{field}.ttl", o, "ttl")
    duration(f"{field}.max_duration", o, "max_duration")
    if not MIN_PRIORITY <= o.priority <= MAX_PRIORITY:
        raise invalid(f"{field}.priority: {o.priority} is not between {MIN_PRIORITY} and {MAX_PRIORITY}")
    if len(o.tags) > MAX_TAGS:
        raise invalid(f"{field}.tags: at most {MAX_TAGS} tags, got {len(o.tags)}")
    for i, tag in enumerate(o.tags):
        if not 1 <= len(tag) <= MAX_TAG_CHARS:
            raise invalid(f"{field}.tags[{i}]: must be 1-{MAX_TAG_CHARS} characters")
        text(f"{field}.tags[{i}]", tag, MAX_TAG_CHARS)  # no NUL: PostgreSQL cannot store it
    metadata(f"{field}.metadata", o.metadata)
    text(f"{field}.concurrency_key", o.concurrency_key, MAX_CONCURRENCY_KEY_CHARS)
    if o.traceparent and (why := tracing.problem(o.traceparent)) is not None:
        raise invalid(f"{field}.traceparent: {why}")


def request_id(field: str, value: str) -> None:
    """A trigger's request id (optional): 1-64 letters, digits, '_', '.', ':'
    or '-' (a UUID fits)."""
    if value and not REQUEST_ID_RE.fullmatch(value):
        raise invalid(
            f"{field}: {quoted(value)} must be 1-{MAX_REQUEST_ID_CHARS} letters, digits, '_', '.', ':' "
            "or '-' (a UUID, say)"
        )


def trigger(r: rpb.TriggerRunRequest, prefix: str = "") -> None:
    identifier(f"{prefix}task_id", r.task_id)
    payload(f"{prefix}payload", r.payload)
    text(f"{prefix}idempotency_key", r.idempotency_key, MAX_KEY_CHARS)
    request_id(f"{prefix}request_id", r.request_id)
    options(f"{prefix}options", r.options)
    if r.parent_run_id:
        run_id(r.parent_run_id, f"{prefix}parent_run_id")


def batch_trigger(r: rpb.BatchTriggerRunsRequest) -> None:
    if not 1 <= len(r.runs) <= MAX_BATCH:
        raise invalid(f"runs: 1 to {MAX_BATCH} runs per batch, got {len(r.runs)}")
    for i, item in enumerate(r.runs):
        if item.namespace and item.namespace != r.namespace:
            raise invalid(
                f"runs[{i}].namespace: {quoted(item.namespace)} differs from the batch's {quoted(r.namespace)}"
            )
        trigger(item, f"runs[{i}].")
    seen: dict[str, int] = {}
    for i, item in enumerate(r.runs):
        if item.request_id and (first := seen.setdefault(item.request_id, i)) != i:
            raise invalid(f"runs[{i}].request_id: {quoted(item.request_id)} is also runs[{first}]'s")


def list_runs(r: rpb.ListRunsRequest) -> None:
    if r.task_id:
        identifier("task_id", r.task_id)
    if not 0 <= r.page_size <= MAX_PAGE_SIZE:
        raise invalid(f"page_size: {r.page_size} is not between 1 and {MAX_PAGE_SIZE}")
    for i, s in enumerate(r.statuses):
        if s not in cpb.RunStatus.values() or s == cpb.RUN_STATUS_UNSPECIFIED:
            raise invalid(f"statuses[{i}]: {s} is not a run status")
    text("tag", r.tag, MAX_TAG_CHARS)
    if r.parent_run_id:
        run_id(r.parent_run_id, "parent_run_id")
    if r.queue:
        identifier("queue", r.queue)
    for field in ("created_after", "created_before"):
        if r.HasField(field) and not time_ok(getattr(r, field)):
            raise invalid(f"{field}: must be between 1970 and 9999")
    if r.HasField("created_after") and r.HasField("created_before"):
        if r.created_after.ToNanoseconds() >= r.created_before.ToNanoseconds():
            raise invalid("created_before: must be later than created_after")


def register(r: wpb.RegisterWorkerRequest) -> None:
    text("worker_id", r.worker_id, MAX_WORKER_ID_CHARS, required=True)
    text("version", r.version, MAX_VERSION_CHARS)
    if r.slots < 0:
        raise invalid("slots: must not be negative")
    if not r.tasks:
        raise invalid("tasks: a worker must serve at least one task")
    seen: set[str] = set()
    for i, t in enumerate(r.tasks):
        identifier(f"tasks[{i}].task_id", t.task_id)
        if t.task_id in seen:
            raise invalid(f"tasks[{i}].task_id: {quoted(t.task_id)} is declared twice")
        seen.add(t.task_id)
        if t.queue:
            identifier(f"tasks[{i}].queue", t.queue)
        try:
            retry_policy.from_proto(t.retry if t.HasField("retry") else None)
        except ValueError as exc:
            raise invalid(f"tasks[{i}].{exc}") from None
        if t.schedule or t.timezone:
            cron(f"tasks[{i}].", t.schedule, t.timezone)
        duration(f"tasks[{i}].max_duration", t, "max_duration")


def cron(prefix: str, expression: str, timezone: str) -> None:
    if not expression:
        raise invalid(f"{prefix}cron: required (a schedule needs a cron expression)")
    try:
        Cron.parse(expression, timezone or "UTC")
    except ValueError as exc:
        raise invalid(f"{prefix}{exc}") from None


def poll_wait(r: wpb.PollAttemptRequest) -> None:
    """The poll's wait: checked before its namespace and other fields."""
    wait_seconds("wait", r, 0.0)


def poll(r: wpb.PollAttemptRequest) -> None:
    """The poll's fields but its wait (poll_wait)."""
    text("worker_id", r.worker_id, MAX_WORKER_ID_CHARS, required=True)
    for i, t in enumerate(r.task_ids):
        identifier(f"task_ids[{i}]", t)
    if not 0 <= r.max_attempts <= MAX_POLL_ATTEMPTS:
        raise invalid(f"max_attempts: 0 to {MAX_POLL_ATTEMPTS} (0 means 1), got {r.max_attempts}")


def attempt_ref(r: Any) -> None:
    """The attempt a heartbeat or write is for, and the token of its assignment."""
    run_id(r.run_id)
    if r.attempt < 1:
        raise invalid("attempt: must be 1 or more")
    if not r.attempt_token:
        raise invalid("attempt_token: required (the attempt_token of the attempt's assignment)")
    text("attempt_token", r.attempt_token, MAX_ATTEMPT_TOKEN_CHARS)


def error_info(field: str, e: cpb.ErrorInfo) -> None:
    text(f"{field}.type", e.type, MAX_ERROR_TYPE_CHARS, required=True)
    text(f"{field}.message", e.message, MAX_ERROR_MESSAGE_CHARS)
    text(f"{field}.stack_trace", e.stack_trace, MAX_STACK_TRACE_CHARS)


def record_step(r: wpb.RecordStepRequest) -> None:
    """A step record (issue 11, D1/D5): a COMPLETED step carries its result
    (`output`, valid and, in json/plain, non-empty), a FAILED one its `error`;
    `tries` is at least 1; at most MAX_TRY_ERRORS `try_errors`, each an error
    like `error`. Where the position may be (the journal's gaps) is history's
    check: it needs the journal."""
    attempt_ref(r)
    if r.position < 0:
        raise invalid(f"position: must not be negative, got {r.position}")
    text("name", r.name, MAX_NAME_CHARS, required=True)
    if r.status == cpb.STEP_STATUS_COMPLETED:
        if not r.HasField("output"):
            raise invalid("output: required with STEP_STATUS_COMPLETED (the step's result)")
        payload("output", r.output, required=True)
    elif r.status == cpb.STEP_STATUS_FAILED:
        if not r.HasField("error"):
            raise invalid("error: required with STEP_STATUS_FAILED")
        error_info("error", r.error)
    else:
        raise invalid("status: must be STEP_STATUS_COMPLETED or STEP_STATUS_FAILED")
    if r.tries < 1:
        raise invalid(f"tries: must be 1 or more (how many times the body ran), got {r.tries}")
    if len(r.try_errors) > MAX_TRY_ERRORS:
        raise invalid(f"try_errors: at most {MAX_TRY_ERRORS} (the latest ones), got {len(r.try_errors)}")
    if len(r.try_errors) >= r.tries:
        raise invalid(
            f"try_errors: {len(r.try_errors)} errors for {r.tries} tries "
            "(one per failed try before the last, at most tries - 1)"
        )
    for i, e in enumerate(r.try_errors):
        error_info(f"try_errors[{i}]", e)


def finish(r: wpb.FinishAttemptRequest) -> None:
    attempt_ref(r)
    if r.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED:
        payload("output", r.output)
    elif r.outcome == wpb.ATTEMPT_OUTCOME_FAILED:
        if not r.HasField("error"):
            raise invalid("error: required with ATTEMPT_OUTCOME_FAILED")
        error_info("error", r.error)
    elif r.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED:
        if not r.HasField("wait"):
            raise invalid("wait: required with ATTEMPT_OUTCOME_SUSPENDED")
        wait(r.wait)
    elif r.outcome != wpb.ATTEMPT_OUTCOME_RELEASED:
        raise invalid("outcome: must be COMPLETED, FAILED, SUSPENDED or RELEASED")


def batch_write(r: wpb.BatchWriteRequest) -> None:
    """Every write valid, in the batch's namespace; a refusal names the write's index."""
    if not 1 <= len(r.writes) <= MAX_BATCH:
        raise invalid(f"writes: 1 to {MAX_BATCH} writes per batch, got {len(r.writes)}")
    for i, w in enumerate(r.writes):
        kind = w.WhichOneof("write")
        if kind is None:
            raise invalid(f"writes[{i}]: set record_step, finish_attempt or append_run_output")
        item = getattr(w, kind)
        if item.namespace and item.namespace != r.namespace:
            raise invalid(
                f"writes[{i}].{kind}.namespace: {quoted(item.namespace)} differs from the batch's {quoted(r.namespace)}"
            )
        try:
            WRITE_CHECKS[kind](item)
        except ServiceError as exc:
            raise invalid(f"writes[{i}].{kind}.{exc.message}") from None


def append_run_output(r: wpb.AppendRunOutputRequest) -> None:
    """Log lines and chunks of an attempt: each within its limits (the per-run
    bounds are history's: what is over them is dropped, not refused)."""
    attempt_ref(r)
    if not 1 <= len(r.outputs) <= MAX_OUTPUTS_PER_APPEND:
        raise invalid(f"outputs: 1 to {MAX_OUTPUTS_PER_APPEND} entries per call, got {len(r.outputs)}")
    for i, o in enumerate(r.outputs):
        kind = o.WhichOneof("output")
        if kind == "log":
            log_line(f"outputs[{i}].log", o.log)
        elif kind == "chunk":
            stream_chunk(f"outputs[{i}].chunk", o.chunk)
        else:
            raise invalid(f"outputs[{i}]: set log or chunk")


def log_line(field: str, line: cpb.LogLine) -> None:
    if line.level not in LOG_LEVELS:
        raise invalid(f"{field}.level: {quoted(line.level)} is not one of {', '.join(LOG_LEVELS)}")
    text(f"{field}.message", line.message, MAX_LOG_MESSAGE_CHARS)
    text(f"{field}.logger", line.logger, MAX_NAME_CHARS)
    text(f"{field}.step_name", line.step_name, MAX_NAME_CHARS)
    if line.step_position < -1:
        raise invalid(f"{field}.step_position: -1 (outside a step) or a position, got {line.step_position}")
    if line.HasField("at") and not time_ok(line.at):
        raise invalid(f"{field}.at: must be between 1970 and 9999")
    size = len(struct_json(f"{field}.fields", line.fields))
    if size > MAX_LOG_FIELDS_BYTES:
        raise invalid(f"{field}.fields: {size} bytes of JSON exceeds the limit of {MAX_LOG_FIELDS_BYTES}")


def stream_chunk(field: str, chunk: cpb.StreamChunk) -> None:
    if not STREAM_NAME_RE.match(chunk.stream):
        raise invalid(f"{field}.stream: {quoted(chunk.stream)} must be 1-64 letters, digits, '_', '.' or '-'")
    if len(chunk.data.data) > MAX_STREAM_CHUNK_BYTES:
        raise invalid(
            f"{field}.data: {len(chunk.data.data)} bytes exceeds the limit of {MAX_STREAM_CHUNK_BYTES} bytes"
        )
    payload(f"{field}.data", chunk.data, required=True)


def list_run_logs(r: rpb.ListRunLogsRequest) -> None:
    run_id(r.run_id)
    if r.after_id < 0:
        raise invalid(f"after_id: {r.after_id} is negative")
    if not 0 <= r.page_size <= MAX_PAGE_SIZE:
        raise invalid(f"page_size: {r.page_size} is not between 1 and {MAX_PAGE_SIZE}")


def wait(w: wpb.WaitSpec) -> None:
    if w.position < 0:
        raise invalid("wait.position: must not be negative")
    text("wait.name", w.name, MAX_NAME_CHARS, required=True)
    if w.HasField("timeout_at") and not time_ok(w.timeout_at):
        raise invalid("wait.timeout_at: must be between 1970 and 9999")
    kind = w.WhichOneof("kind")
    if kind is None:
        raise invalid("wait: one of sleep, event, token or children is required")
    if kind == "sleep":
        if not w.sleep.HasField("until"):
            raise invalid("wait.sleep.until: required (when to wake up)")
        if not time_ok(w.sleep.until):
            raise invalid("wait.sleep.until: must be between 1970 and 9999")
    elif kind == "event":
        text("wait.event.name", w.event.name, MAX_NAME_CHARS, required=True)
        text("wait.event.key", w.event.key, MAX_NAME_CHARS)
    elif kind == "token":
        text("wait.token.token_id", w.token.token_id, MAX_TOKEN_ID_CHARS, required=True)
    else:
        if not 1 <= len(w.children.runs) <= MAX_BATCH:
            raise invalid(f"wait.children.runs: 1 to {MAX_BATCH} children, got {len(w.children.runs)}")
        for i, c in enumerate(w.children.runs):
            identifier(f"wait.children.runs[{i}].task_id", c.task_id)
            payload(f"wait.children.runs[{i}].payload", c.payload)
            options(f"wait.children.runs[{i}].options", c.options)


def update_metadata(r: wpb.UpdateRunMetadataRequest) -> None:
    attempt_ref(r)
    metadata("metadata", r.metadata)


def send_event(r: wspb.SendEventRequest) -> None:
    if r.run_id:
        run_id(r.run_id)
    text("name", r.name, MAX_NAME_CHARS, required=True)
    text("key", r.key, MAX_NAME_CHARS)
    payload("payload", r.payload)


def create_token(r: wspb.CreateWaitTokenRequest) -> None:
    if r.run_id:
        run_id(r.run_id)
    duration("timeout", r, "timeout")
    text("idempotency_key", r.idempotency_key, MAX_KEY_CHARS)


def token_ref(r: Any) -> None:
    text("token_id", r.token_id, MAX_TOKEN_ID_CHARS, required=True)


def complete_token(r: wspb.CompleteWaitTokenRequest) -> None:
    token_ref(r)
    payload("payload", r.payload)


def create_schedule(r: spb.CreateScheduleRequest) -> None:
    identifier("schedule_id", r.schedule_id)
    identifier("task_id", r.task_id)
    cron("", r.cron, r.timezone)
    payload("payload", r.payload)
    text("deduplication_key", r.deduplication_key, MAX_KEY_CHARS)


def schedule_ref(r: Any) -> None:
    identifier("schedule_id", r.schedule_id)


def list_schedules(r: spb.ListSchedulesRequest) -> None:
    if r.task_id:
        identifier("task_id", r.task_id)


def queue_ref(r: Any) -> None:
    identifier("name", r.name)


def update_queue(r: qpb.UpdateQueueRequest) -> None:
    queue_ref(r)
    if r.HasField("concurrency_limit") and not 0 <= r.concurrency_limit <= MAX_QUEUE_CONCURRENCY:
        raise invalid(
            f"concurrency_limit: {r.concurrency_limit} is not between 0 and {MAX_QUEUE_CONCURRENCY}"
        )
    if r.HasField("max_depth") and not 0 <= r.max_depth <= MAX_QUEUE_DEPTH:
        raise invalid(f"max_depth: {r.max_depth} is not between 0 and {MAX_QUEUE_DEPTH}")
    if r.HasField("rate_limit"):
        if not 0 <= r.rate_limit.limit <= MAX_RATE_LIMIT:
            raise invalid(f"rate_limit.limit: {r.rate_limit.limit} is not between 0 and {MAX_RATE_LIMIT}")
        if r.rate_limit.limit and not r.rate_limit.HasField("period"):
            raise invalid("rate_limit.period: required with a rate limit")
        duration("rate_limit.period", r.rate_limit, "period", limit=MAX_RATE_PERIOD_SECONDS)


# The check of each kind of BatchWrite write.
WRITE_CHECKS: dict[str, Any] = {
    "record_step": record_step,
    "finish_attempt": finish,
    "append_run_output": append_run_output,
}
MAX_TIMESTAMP_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the last time a Timestamp holds


def nothing(r: Any) -> None:
    """No fields to check (the namespace is checked for every request)."""


def get_run(r: rpb.GetRunRequest) -> None:
    run_id(r.run_id)


def cancel_run(r: rpb.CancelRunRequest) -> None:
    run_id(r.run_id)
    text("reason", r.reason, MAX_REASON_CHARS)


def wait_run(r: rpb.WaitRunRequest) -> None:
    run_id(r.run_id)
    wait_seconds("timeout", r, 0.0)


def watch_run(r: rpb.WatchRunRequest) -> None:
    run_id(r.run_id)
    if r.after_event_id < 0:
        raise invalid(f"after_event_id: {r.after_event_id} is negative")


def watch_runs(r: rpb.WatchRunsRequest) -> None:
    if r.after_event_id < 0:
        raise invalid(f"after_event_id: {r.after_event_id} is negative")
    if r.task_id:
        identifier("task_id", r.task_id)
    if len(r.tags) > MAX_TAGS:
        raise invalid(f"tags: {len(r.tags)} tags, at most {MAX_TAGS}")
    for i, tag in enumerate(r.tags):
        text(f"tags[{i}]", tag, MAX_TAG_CHARS, required=True)
