"""Who is calling and what they may do. A call's API key (`authorization:
Bearer <key>`) is authenticated by matching, which owns the keys, and
remembered here for CACHE_SECONDS (a revocation announced on NATS forgets it
at once); the key's namespace and role are then held against the request's
namespaces and the route's roles."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from cairn import keys
from cairn.internal.v1 import matching_service_pb2 as mpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import run_service_pb2 as rpb
from services.common.errors import permission_denied, unauthenticated
from services.frontend.backend import MATCHING, Backend
from services.frontend.caller import Caller

# A key is checked with matching again after this long (a lost revocation notice
# costs at most this); an expiry is checked on every call.
CACHE_SECONDS = 10.0
CACHE_MAX = 10_000
ROLE_NAMES = {kpb.KEY_ROLE_CLIENT: "client", kpb.KEY_ROLE_WORKER: "worker", kpb.KEY_ROLE_ADMIN: "admin"}
MISSING = "no API key: send it as `authorization: Bearer <key>` (the CLI's --api-key or CAIRN_API_KEY)"
Metadata = Iterable[tuple[str, Any]]  # gRPC's invocation metadata


def presented_key(metadata: Metadata | None) -> str:
    """The key a call carries; UNAUTHENTICATED when it has none or a malformed one."""
    values = [v for k, v in metadata or () if k == keys.AUTHORIZATION]
    if not values:
        raise unauthenticated(MISSING)
    value = values[0] if isinstance(values[0], str) else ""
    key = keys.from_header(value) if len(values) == 1 else None
    if key is None:
        raise unauthenticated("the authorization metadata must be one `Bearer <key>`")
    return key


def _caller(key: kpb.ApiKey) -> Caller:
    expires = key.expires_at.ToDatetime(dt.UTC).timestamp() if key.HasField("expires_at") else None
    return Caller(key.id, key.namespace, ROLE_NAMES[key.role], expires)


class Authenticator:
    """Turns a call's key into its Caller, asking matching once per key per
    CACHE_SECONDS."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._known: dict[str, tuple[float, Caller]] = {}

    async def caller(self, metadata: Metadata | None) -> Caller:
        key = presented_key(metadata)
        now = time.monotonic()
        known = self._known.get(key)
        if known is None or now - known[0] >= CACHE_SECONDS:
            response = await self.backend.call(
                MATCHING, "AuthenticateKey", mpb.AuthenticateKeyRequest(secret=key)
            )
            if len(self._known) >= CACHE_MAX:
                self._known.clear()
            known = self._known[key] = (now, _caller(response.key))
        caller = known[1]
        if caller.expires_at is not None and caller.expires_at <= time.time():
            self._known.pop(key, None)
            raise unauthenticated("the API key is unknown, expired or revoked")
        return caller

    def forget(self, message: dict[str, Any]) -> None:
        """A revocation notice: forget the key at once."""
        key_id = message.get("id")
        for key, (_, caller) in list(self._known.items()):
            if caller.key_id == key_id:
                del self._known[key]


def namespaces(request: Any, items: Iterable[Any]) -> set[str]:
    """Every namespace a request names: its own and its batch items'."""
    return {request.namespace, *(item.namespace for item in items)}


def authorize(caller: Caller, roles: frozenset[str], method: str, request: Any, items: Iterable[Any]) -> None:
    """PERMISSION_DENIED unless the caller's role may call the method and its
    key works in every namespace the request names. A worker key triggers
    only child runs (from inside an attempt: parent_run_id)."""
    if caller.role not in roles:
        raise permission_denied(f"a {caller.role} key may not call {method} (it needs {_needs(roles)})")
    if caller.role == "worker" and isinstance(request, rpb.TriggerRunRequest) and not request.parent_run_id:
        raise permission_denied(
            "a worker key triggers only child runs (with parent_run_id); use a client key"
        )
    if caller.everywhere:
        return
    for ns in sorted(namespaces(request, items)):
        if ns != caller.namespace:
            raise permission_denied(
                f"the API key works in namespace {caller.namespace!r}, not in {ns[:64]!r}"
            )
    if isinstance(request, kpb.CreateKeyRequest) and request.all_namespaces:
        raise permission_denied("only a key for every namespace may create one (all_namespaces)")


def _needs(roles: frozenset[str]) -> str:
    return " or ".join(f"a {r} key" for r in keys.ROLES if r in roles)
