"""API keys as JSON, in the shape the CLI's --json prints and the HTTP API
answers (the key resources of cairn/run_json.py's converter, kept apart from
the runs')."""

from __future__ import annotations

from typing import TypedDict

from google.protobuf.timestamp_pb2 import Timestamp

from cairn.run_json import format_time
from cairn.v1 import key_service_pb2 as kpb

ROLE_NAMES = {kpb.KEY_ROLE_CLIENT: "client", kpb.KEY_ROLE_WORKER: "worker", kpb.KEY_ROLE_ADMIN: "admin"}
ROLES = {name: role for role, name in ROLE_NAMES.items()}


class KeyJSON(TypedDict):
    """An API key without its secret; namespace "*" works in every namespace."""

    id: str
    namespace: str
    role: str
    name: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None


def _time(ts: Timestamp, present: bool) -> str | None:
    return format_time(ts) if present else None


def key_to_dict(k: kpb.ApiKey) -> KeyJSON:
    """A key (ListKeys, RevokeKey, and CreateKey's key)."""
    return {
        "id": k.id,
        "namespace": k.namespace,
        "role": ROLE_NAMES.get(k.role, "unspecified"),
        "name": k.name,
        "created_at": _time(k.created_at, k.HasField("created_at")),
        "expires_at": _time(k.expires_at, k.HasField("expires_at")),
        "revoked_at": _time(k.revoked_at, k.HasField("revoked_at")),
    }
