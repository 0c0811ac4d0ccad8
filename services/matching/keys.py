"""API keys (matching owns the api_keys table): creating, listing, revoking,
and telling whose a secret is. A key is `cairn_<id>_<secret>` (cairn/keys.py);
only HMAC-SHA256(salt, secret) is stored. The secret is 256 random bits, so a
slow password hash would buy nothing against guessing and would cost CPU on
every uncached check (and on every bad key of a flood); the per-key salt keeps
equal hashes from ever meaning equal keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import asyncpg
import grpc

from cairn import keys
from cairn.v1 import key_service_pb2 as kpb
from services.common.errors import ServiceError, not_found
from services.matching.sql import keys as sql

ROLES = {"client": kpb.KEY_ROLE_CLIENT, "worker": kpb.KEY_ROLE_WORKER, "admin": kpb.KEY_ROLE_ADMIN}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
REFUSED = "the API key is unknown, expired or revoked"


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def to_proto(r: asyncpg.Record) -> kpb.ApiKey:
    key = kpb.ApiKey(id=r["id"], namespace=r["namespace"], role=ROLES[r["role"]], name=r["name"])
    key.created_at.FromDatetime(r["created_at"])
    if r["expires_at"] is not None:
        key.expires_at.FromDatetime(r["expires_at"])
    if r["revoked_at"] is not None:
        key.revoked_at.FromDatetime(r["revoked_at"])
    return key


def unauthenticated() -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, REFUSED)


class KeyStore:
    """Transactions on API keys."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, request: kpb.CreateKeyRequest) -> kpb.CreateKeyResponse:
        """A new key; its secret is in the answer and nowhere else."""
        key_id, whole = keys.new_key()
        split = keys.split(whole)
        assert split is not None
        salt = secrets.token_bytes(16)
        expires = request.expires_at.ToDatetime(dt.UTC) if request.HasField("expires_at") else None
        namespace = keys.ALL_NAMESPACES if request.all_namespaces else request.namespace
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                sql.CREATE_KEY,
                key_id,
                namespace,
                ROLE_NAMES[request.role],
                request.name,
                salt,
                _digest(salt, split[1]),
                expires,
            )
        assert row is not None  # INSERT ... RETURNING
        return kpb.CreateKeyResponse(key=to_proto(row), secret=whole)

    async def ensure_admin(self, whole: str) -> bool:
        """Stores a bootstrap admin key for every namespace (`--admin-key`)
        unless its id exists; True when it was created."""
        split = keys.split(whole)
        if split is None:
            raise ValueError("the admin key is not a Cairn key (cairn_<16 hex>_<43 characters>)")
        salt = secrets.token_bytes(16)
        async with self.pool.acquire() as conn:
            created = await conn.fetchval(
                sql.ENSURE_KEY, split[0], "admin (bootstrap)", salt, _digest(salt, split[1])
            )
        return created is not None

    async def list(self, namespace: str) -> list[kpb.ApiKey]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql.LIST_KEYS, namespace)
        return [to_proto(r) for r in rows]

    async def revoke(self, namespace: str, key_id: str) -> kpb.ApiKey:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(sql.REVOKE_KEY, namespace, key_id)
        if row is None:
            raise not_found(f"key {key_id[:64]!r} not found in namespace {namespace!r}")
        return to_proto(row)

    async def authenticate(self, whole: str) -> kpb.ApiKey:
        """The key a secret belongs to, while it works; UNAUTHENTICATED with
        one message for every reason (unknown, wrong secret, expired, revoked)."""
        split = keys.split(whole)
        if split is None:
            raise unauthenticated()
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(sql.KEY_FOR_CHECK, split[0])
        if row is None or not hmac.compare_digest(bytes(row["hash"]), _digest(bytes(row["salt"]), split[1])):
            raise unauthenticated()
        now = dt.datetime.now(dt.UTC)
        if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= now):
            raise unauthenticated()
        return to_proto(row)
