"""Requests to history as the operations' arguments: new runs, waits, page
tokens. Callers (frontend, matching) have validated input."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from cairn import payloads
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import invalid
from services.history import convert
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
    )


def wait_spec(namespace: str, r: wpb.FinishAttemptRequest) -> dict[str, Any]:
    """A suspension's wait, from the request (a sleep when only wake_at is set)."""
    if not r.HasField("wait"):
        until = r.wake_at.ToDatetime(tzinfo=UTC)
        return {"kind": "sleep", "position": -1, "name": "wait.sleep", "timeout_at": until}
    w = r.wait
    spec: dict[str, Any] = {
        "kind": w.WhichOneof("kind"),
        "position": w.position,
        "name": w.name,
        "timeout_at": w.timeout_at.ToDatetime(tzinfo=UTC) if w.HasField("timeout_at") else None,
    }
    if spec["kind"] == "event":
        spec.update(event_name=w.event.name, event_key=w.event.key)
    elif spec["kind"] == "token":
        spec.update(token_id=w.token.token_id)
    elif spec["kind"] == "children":
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
