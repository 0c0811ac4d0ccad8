"""The public KeyService at the frontend: the checks of its requests and the
handlers that apply the caller's scope (a key for every namespace also sees
and revokes the keys for every namespace). Keys themselves live in matching."""

from __future__ import annotations

import time
from typing import Any

import grpc

from cairn import keys
from cairn.v1 import key_service_pb2 as kpb
from services.common.errors import ServiceError, invalid
from services.frontend import validation as check
from services.frontend.backend import MATCHING, Backend
from services.frontend.caller import CALLER

MAX_KEY_NAME_CHARS = 200
Context = grpc.aio.ServicerContext[Any, Any]


def create_key(r: kpb.CreateKeyRequest) -> None:
    if r.role not in (kpb.KEY_ROLE_CLIENT, kpb.KEY_ROLE_WORKER, kpb.KEY_ROLE_ADMIN):
        raise invalid(f"role: must be client, worker or admin, got {r.role}")
    if r.all_namespaces and r.role != kpb.KEY_ROLE_ADMIN:
        raise invalid("all_namespaces: only an admin key may work in every namespace")
    check.text("name", r.name, MAX_KEY_NAME_CHARS)
    if r.HasField("expires_at"):
        seconds = r.expires_at.seconds
        if not 0 <= r.expires_at.nanos < 1_000_000_000 or seconds > check.MAX_TIMESTAMP_SECONDS:
            raise invalid("expires_at: not a valid time")
        if seconds <= time.time():
            raise invalid("expires_at: must be in the future")


def key_ref(r: kpb.RevokeKeyRequest) -> None:
    if not r.id:
        raise invalid("id: required")
    if keys.split(f"{keys.PREFIX}{r.id}_{'A' * 43}") is None:
        raise invalid(f"id: {check.quoted(r.id)} is not a key id (16 hexadecimal digits)")


class KeyHandlers:
    """ListKeys and RevokeKey, which reach the keys for every namespace only
    for a caller whose key has every namespace."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    @staticmethod
    def _everywhere() -> bool:
        caller = CALLER.get()
        return caller is None or caller.everywhere

    async def list_keys(self, request: kpb.ListKeysRequest, context: Context) -> kpb.ListKeysResponse:
        response: kpb.ListKeysResponse = await self.b.call(MATCHING, "ListKeys", request)
        if self._everywhere():
            everywhere = await self.b.call(
                MATCHING, "ListKeys", kpb.ListKeysRequest(namespace=keys.ALL_NAMESPACES)
            )
            merged = sorted(
                [*response.keys, *everywhere.keys], key=lambda k: k.created_at.ToNanoseconds(), reverse=True
            )
            response = kpb.ListKeysResponse(keys=merged)
        return response

    async def revoke_key(self, request: kpb.RevokeKeyRequest, context: Context) -> kpb.RevokeKeyResponse:
        """The key of the request's namespace; for a caller with every
        namespace, else the key for every namespace of that id."""
        try:
            response: kpb.RevokeKeyResponse = await self.b.call(MATCHING, "RevokeKey", request)
            return response
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or not self._everywhere():
                raise
            missing = ServiceError(exc.code(), exc.details() or "not found")
        try:
            everywhere = kpb.RevokeKeyRequest(namespace=keys.ALL_NAMESPACES, id=request.id)
            response = await self.b.call(MATCHING, "RevokeKey", everywhere)
            return response
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise missing from None
            raise
