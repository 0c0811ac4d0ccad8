"""Checks on every external request, before anything is routed or written.
Each failure is INVALID_ARGUMENT with a message that names the field."""
from __future__ import annotations

import re
import uuid

from cairn import payloads, retry_policy
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import invalid

DEFAULT_NAMESPACE = "default"
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_KEY_CHARS = 256
MAX_WAIT_SECONDS = 60.0


def namespace(value: str) -> str:
    """The namespace, "default" when empty."""
    if not value:
        return DEFAULT_NAMESPACE
    if not NAMESPACE_RE.match(value):
        raise invalid(f"namespace: {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def identifier(field: str, value: str) -> None:
    if not value:
        raise invalid(f"{field}: required")
    if not ID_RE.match(value):
        raise invalid(f"{field}: {value!r} must be 1-128 letters, digits, '_', '.', ':' or '-', "
                      "starting with a letter or digit")


def run_id(value: str, field: str = "run_id") -> None:
    if not value:
        raise invalid(f"{field}: required")
    try:
        uuid.UUID(value)
    except ValueError:
        raise invalid(f"{field}: {value!r} is not a valid run id (a UUID)") from None


def payload(field: str, p: cpb.Payload) -> None:
    if len(p.data) > MAX_PAYLOAD_BYTES:
        raise invalid(f"{field}: {len(p.data)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")
    try:
        payloads.validate(p.data, p.encoding)
    except payloads.PayloadError as exc:
        raise invalid(f"{field}: {exc}") from None


def text(field: str, value: str, limit: int, required: bool = False) -> None:
    if required and not value:
        raise invalid(f"{field}: required")
    if len(value) > limit:
        raise invalid(f"{field}: longer than {limit} characters")


def wait_seconds(field: str, msg: object, default: float) -> float:
    """A Duration field in seconds, 0 to 60."""
    if not msg.HasField(field):  # type: ignore[attr-defined]
        return default
    seconds = getattr(msg, field).ToTimedelta().total_seconds()
    if seconds < 0 or seconds > MAX_WAIT_SECONDS:
        raise invalid(f"{field}: must be between 0 and {MAX_WAIT_SECONDS:g} seconds")
    return seconds


def trigger(r: rpb.TriggerRunRequest) -> None:
    identifier("task_id", r.task_id)
    payload("payload", r.payload)
    text("idempotency_key", r.idempotency_key, MAX_KEY_CHARS)


def list_runs(r: rpb.ListRunsRequest) -> None:
    if r.task_id:
        identifier("task_id", r.task_id)
    if not 0 <= r.page_size <= 1000:
        raise invalid(f"page_size: {r.page_size} is not between 1 and 1000")
    for i, s in enumerate(r.statuses):
        if s not in cpb.RunStatus.values() or s == cpb.RUN_STATUS_UNSPECIFIED:
            raise invalid(f"statuses[{i}]: {s} is not a run status")


def register(r: wpb.RegisterWorkerRequest) -> None:
    text("worker_id", r.worker_id, 200, required=True)
    text("version", r.version, 100)
    if r.slots < 0:
        raise invalid("slots: must not be negative")
    if not r.tasks:
        raise invalid("tasks: a worker must serve at least one task")
    seen: set[str] = set()
    for i, t in enumerate(r.tasks):
        identifier(f"tasks[{i}].task_id", t.task_id)
        if t.task_id in seen:
            raise invalid(f"tasks[{i}].task_id: {t.task_id!r} is declared twice")
        seen.add(t.task_id)
        if t.queue:
            identifier(f"tasks[{i}].queue", t.queue)
        try:
            retry_policy.from_proto(t.retry if t.HasField("retry") else None)
        except ValueError as exc:
            raise invalid(f"tasks[{i}].{exc}") from None


def poll(r: wpb.PollAttemptRequest) -> None:
    text("worker_id", r.worker_id, 200, required=True)
    for i, t in enumerate(r.task_ids):
        identifier(f"task_ids[{i}]", t)
    wait_seconds("wait", r, 0)


def attempt_ref(r: object) -> None:
    run_id(r.run_id)  # type: ignore[attr-defined]
    if r.attempt < 1:  # type: ignore[attr-defined]
        raise invalid("attempt: must be 1 or more")


def error_info(field: str, e: cpb.ErrorInfo) -> None:
    text(f"{field}.type", e.type, 500, required=True)
    text(f"{field}.message", e.message, 64 * 1024)
    text(f"{field}.stack_trace", e.stack_trace, 256 * 1024)


def record_step(r: wpb.RecordStepRequest) -> None:
    attempt_ref(r)
    if r.position < 0:
        raise invalid("position: must not be negative")
    text("name", r.name, 256, required=True)
    if r.status == cpb.STEP_STATUS_COMPLETED:
        payload("output", r.output)
    elif r.status == cpb.STEP_STATUS_FAILED:
        error_info("error", r.error)
    else:
        raise invalid("status: must be STEP_STATUS_COMPLETED or STEP_STATUS_FAILED")
    if r.tries < 0:
        raise invalid("tries: must not be negative")


def finish(r: wpb.FinishAttemptRequest) -> None:
    attempt_ref(r)
    if r.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED:
        payload("output", r.output)
    elif r.outcome == wpb.ATTEMPT_OUTCOME_FAILED:
        error_info("error", r.error)
    elif r.outcome == wpb.ATTEMPT_OUTCOME_SUSPENDED:
        if not r.HasField("wake_at"):
            raise invalid("wake_at: required with ATTEMPT_OUTCOME_SUSPENDED")
    else:
        raise invalid("outcome: must be COMPLETED, FAILED or SUSPENDED")
