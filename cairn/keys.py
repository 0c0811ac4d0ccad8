"""API keys and credentials as every side sees them: the shape of a key, the
roles, and the metadata that carries a key (from clients) or the cluster's
internal credential (between services). Hashing and storage are matching's."""

from __future__ import annotations

import re
import secrets

# gRPC metadata key and HTTP header of a caller's key: "Bearer <key>".
AUTHORIZATION = "authorization"
BEARER = "Bearer "
# gRPC metadata of a call between services: the shared internal credential.
INTERNAL_CREDENTIAL = "cairn-internal"
# gRPC metadata the frontend adds to a forwarded call: the caller's key id
# (matching binds a worker id to the key that registered it).
CALLER_KEY_ID = "cairn-caller-key"
# A key's namespace when it works in every namespace.
ALL_NAMESPACES = "*"
ROLES = ("client", "worker", "admin")
PREFIX = "cairn_"
_ID_BYTES = 8
_SECRET_BYTES = 32
_SHAPE = re.compile(r"cairn_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def new_key() -> tuple[str, str]:
    """A fresh key: (its public id, the whole key to hand out once)."""
    key_id = secrets.token_hex(_ID_BYTES)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def split(key: str) -> tuple[str, str] | None:
    """(id, secret part) of a well-formed key, else None."""
    m = _SHAPE.fullmatch(key)
    return (m.group(1), m.group(2)) if m else None


def bearer(key: str) -> tuple[str, str]:
    """The metadata entry that carries a key."""
    return (AUTHORIZATION, BEARER + key)


def from_header(value: str) -> str | None:
    """The key in an authorization value ("Bearer <key>", any case of the
    scheme), else None."""
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() or None if scheme.lower() == "bearer" else None
