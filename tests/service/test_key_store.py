"""MatchingService's API keys: a created key authenticates until it is revoked
or expires, every refusal says the same, only the hash is stored, and a
revocation is announced on NATS."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import asyncpg
import grpc
import nats
import pytest

from cairn import keys
from cairn.internal.v1 import matching_service_pb2 as mpb
from cairn.v1 import key_service_pb2 as kpb
from services.common import bus as bus_mod


async def create(services, role=kpb.KEY_ROLE_CLIENT, **fields) -> kpb.CreateKeyResponse:
    return await services.matching.CreateKey(
        kpb.CreateKeyRequest(namespace=services.namespace, role=role, **fields)
    )


async def authenticate(services, secret: str) -> kpb.ApiKey:
    response = await services.matching.AuthenticateKey(mpb.AuthenticateKeyRequest(secret=secret))
    return response.key


async def refused(services, secret: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await authenticate(services, secret)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return info.value.details()


async def test_a_created_key_authenticates_as_its_namespace_and_role(services):
    made = await create(services, kpb.KEY_ROLE_WORKER, name="billing workers")
    assert keys.split(made.secret) is not None and keys.split(made.secret)[0] == made.key.id
    key = await authenticate(services, made.secret)
    assert (key.id, key.namespace, key.role, key.name) == (
        made.key.id,
        services.namespace,
        kpb.KEY_ROLE_WORKER,
        "billing workers",
    )
    listed = await services.matching.ListKeys(kpb.ListKeysRequest(namespace=services.namespace))
    assert [k.id for k in listed.keys] == [made.key.id]


async def test_only_a_salted_hash_of_the_secret_is_stored(services):
    made = await create(services)
    conn = await asyncpg.connect(services.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE id = $1", made.key.id)
    finally:
        await conn.close()
    secret_part = keys.split(made.secret)[1]
    stored = b"".join(v for v in row.values() if isinstance(v, bytes)) + str(dict(row)).encode()
    assert secret_part.encode() not in stored and made.secret.encode() not in stored
    assert len(row["hash"]) == 32 and len(row["salt"]) == 16


async def test_a_wrong_unknown_malformed_revoked_or_expired_key_is_refused_alike(services):
    made = await create(services)
    key_id, secret = keys.split(made.secret)
    wrong = f"cairn_{key_id}_{'A' * 43}"
    unknown = f"cairn_{'0' * 16}_{secret}"
    messages = {await refused(services, s) for s in (wrong, unknown, "not a key", "")}
    revoked = await services.matching.RevokeKey(kpb.RevokeKeyRequest(namespace=services.namespace, id=key_id))
    assert revoked.key.HasField("revoked_at")
    messages.add(await refused(services, made.secret))
    expired = await create(services)
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute(
            "UPDATE api_keys SET expires_at = $2 WHERE id = $1",
            expired.key.id,
            dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
    finally:
        await conn.close()
    messages.add(await refused(services, expired.secret))
    assert messages == {"the API key is unknown, expired or revoked"}


async def test_revoking_is_announced_and_a_key_of_another_namespace_is_not_found(services):
    made = await create(services)
    nc = await nats.connect(services.nats_url)
    notice: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def on_msg(msg) -> None:
        if not notice.done():
            notice.set_result(json.loads(msg.data))

    await nc.subscribe(f"{services.nats_prefix}.{bus_mod.KEYS}", cb=on_msg)
    await nc.flush()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await services.matching.RevokeKey(kpb.RevokeKeyRequest(namespace="elsewhere", id=made.key.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await authenticate(services, made.secret)).id == made.key.id
    await services.matching.RevokeKey(kpb.RevokeKeyRequest(namespace=services.namespace, id=made.key.id))
    try:
        assert await asyncio.wait_for(notice, 5) == {"id": made.key.id}
    finally:
        await nc.drain()
