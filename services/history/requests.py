"""Requests to history as the operations' arguments: new runs, step records,
waits, page tokens. Callers (frontend, matching) have validated the shape of
the input; history still refuses what would corrupt a journal when called
directly (check_step, wait_spec). The rules that need the journal (positions)
are the operations'."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from cairn import payloads
from cairn.limits import MAX_TRY_ERRORS
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import invalid
from services.history import convert
from services.history.api.output import Output, chunk_details, log_details
from services.history.api.transition import NewRun, parse_run_id


def encode_page_token(created_at: datetime, run_id: uuid.UUID) -> str:
    """ListRuns' cursor after a run."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{run_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    """The cursor of a page token; INVALID_ARGUMENT for anything else."""
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except ValueError:
        raise invalid("page_token: not a token returned by ListRuns") from None


def encoding(p: cpb.Payload) -> str:
    """A payload's encoding (JSON when unset). Its bytes pass through unparsed."""
    return p.encoding or payloads.JSON


def new_run(namespace: str, r: rpb.TriggerRunRequest) -> NewRun:
    """The run a trigger asks for."""
    return NewRun(
        namespace=namespace,
        task_id=r.task_id,
        data=r.payload.data,
        encoding=encoding(r.payload),
        idempotency_key=r.idempotency_key or None,
        options=convert.options(r.options),
        parent_run_id=parse_run_id(r.parent_run_id) if r.parent_run_id else None,
        request_id=r.request_id or None,
    )


def check_step(r: wpb.RecordStepRequest) -> None:
    """Refuses (INVALID_ARGUMENT naming the field) a step record that cannot be
    journaled: a negative position, no status, fewer than 1 try, too many
    try_errors, a completed step without output (json/plain output must be
    JSON text: JSON null is the 4 bytes `null`), a failed one without error."""
    if r.position < 0:
        raise invalid(f"position: must be 0 or more, got {r.position}")
    if r.status not in (cpb.STEP_STATUS_COMPLETED, cpb.STEP_STATUS_FAILED):
        raise invalid("status: must be STEP_STATUS_COMPLETED or STEP_STATUS_FAILED")
    if r.tries < 1:
        raise invalid(f"tries: must be at least 1 (the body ran once or more), got {r.tries}")
    if len(r.try_errors) > MAX_TRY_ERRORS:
        raise invalid(f"try_errors: at most {MAX_TRY_ERRORS} (the latest ones), got {len(r.try_errors)}")
    if r.status == cpb.STEP_STATUS_COMPLETED:
        if encoding(r.output) == payloads.JSON and not r.output.data:
            raise invalid(
                f"output: the completed step at position {r.position} has no output; "
                "json/plain output must be JSON text (JSON null is `null`)"
            )
    elif not r.HasField("error"):
        raise invalid(f"error: the failed step at position {r.position} has no error")


def wait_spec(namespace: str, r: wpb.FinishAttemptRequest) -> dict[str, Any]:
    """A suspension's wait, from the request; INVALID_ARGUMENT when it has none."""
    w = r.wait
    kind = w.WhichOneof("kind") if r.HasField("wait") else None
    if kind is None:
        raise invalid("wait: a suspension needs its wait (sleep, event, token or children)")
    if w.position < 0:
        raise invalid(f"wait.position: must be 0 or more, got {w.position}")
    spec: dict[str, Any] = {
        "kind": kind,
        "position": w.position,
        "name": w.name,
        "timeout_at": w.timeout_at.ToDatetime(tzinfo=UTC) if w.HasField("timeout_at") else None,
    }
    if kind == "sleep":
        spec["timeout_at"] = w.sleep.until.ToDatetime(tzinfo=UTC)  # its wake-up, not a failure
    elif kind == "event":
        spec.update(event_name=w.event.name, event_key=w.event.key)
    elif kind == "token":
        spec.update(token_id=w.token.token_id)
    elif kind == "children":
        spec["children"] = [
            NewRun(
                namespace=namespace,
                task_id=c.task_id,
                data=c.payload.data,
                encoding=encoding(c.payload),
                options=convert.options(c.options),
            )
            for c in w.children.runs
        ]
    return spec


def outputs(r: wpb.AppendRunOutputRequest) -> list[Output]:
    """An AppendRunOutput's entries as the events to append, in order. The
    frontend checked each against its limits; history refuses what it cannot store."""
    result: list[Output] = []
    for i, o in enumerate(r.outputs):
        if o.WhichOneof("output") == "log":
            line = o.log
            details = log_details(
                line.level,
                line.message,
                line.logger,
                line.step_position,
                line.step_name,
                convert.struct_dict(line.fields),
            )
            at = line.at.ToDatetime(tzinfo=UTC) if line.HasField("at") else None
            result.append(Output("log", details, at))
        elif o.WhichOneof("output") == "chunk":
            data, kind = o.chunk.data.data, encoding(o.chunk.data)
            if kind not in (payloads.JSON, payloads.BINARY):
                raise invalid(f"outputs[{i}].chunk.data.encoding: {kind!r} is not json/plain or binary/plain")
            try:
                details = chunk_details(o.chunk.stream, data, kind)
            except ValueError:
                raise invalid(f"outputs[{i}].chunk.data: not JSON") from None
            result.append(Output("stream", details, size=len(data)))
        else:
            raise invalid(f"outputs[{i}]: set log or chunk")
    return result
