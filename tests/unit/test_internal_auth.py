"""The internal credential (services/common/internal_auth.py) on a real
in-process grpc.aio server built as the services build theirs: a call without
it or with a wrong one is UNAUTHENTICATED before its handler runs (unary and
streaming alike, counted by the call metrics), the health service answers
without it, a credentialed channel sends it with the caller's own metadata,
and the start check's messages."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from cairn.keys import INTERNAL_CREDENTIAL
from services.common import config, grpc_server, internal_auth

SERVICE = "cairn.test.v1.Guarded"
CREDENTIAL = "c" * 43
handled: list[tuple[str, Any]] = []


async def _echo(request: bytes, context: Any) -> bytes:
    handled.append(("Echo", dict(context.invocation_metadata())))
    return request


async def _stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    handled.append(("Stream", None))
    yield request


def _register(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
                    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
                },
            ),
        )
    )


def _refused_count() -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": "Echo", "grpc_code": "UNAUTHENTICATED"}
    return REGISTRY.get_sample_value("cairn_grpc_server_handled_total", labels) or 0.0


def test_calls_without_the_credential_are_refused_before_their_handler() -> None:
    async def main() -> None:
        settings = config.Settings(listen="127.0.0.1:0", internal_credential=CREDENTIAL)
        server, health = grpc_server.make_server(
            "127.0.0.1:0", _register, [SERVICE], internal_auth.server_interceptors(settings, "guarded")
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        refused_before = _refused_count()
        handled.clear()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
                wrong = internal_auth.credentialed(plain, "w" * 43)
                for channel, words in (
                    (plain, "no internal credential"),
                    (wrong, "wrong internal credential"),
                ):
                    for call in (
                        channel.unary_unary(f"/{SERVICE}/Echo")(b"x"),
                        _first(channel.unary_stream(f"/{SERVICE}/Stream")(b"x")),
                    ):
                        with pytest.raises(grpc.aio.AioRpcError) as err:
                            await call
                        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                        details = err.value.details() or ""
                        assert words in details and "guarded" in details and INTERNAL_CREDENTIAL in details
                        assert CREDENTIAL not in details and "w" * 43 not in details
                assert handled == [], "a handler ran for a refused call"
                assert _refused_count() == refused_before + 2

                reply = await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest())
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

                good = internal_auth.credentialed(plain, CREDENTIAL)
                assert (
                    await good.unary_unary(f"/{SERVICE}/Echo")(b"x", metadata=(("cairn-caller-key", "k1"),))
                    == b"x"
                )
                assert await _first(good.unary_stream(f"/{SERVICE}/Stream")(b"y")) == b"y"
                metadata = handled[0][1]
                assert metadata[INTERNAL_CREDENTIAL] == CREDENTIAL and metadata["cairn-caller-key"] == "k1"
        finally:
            await server.stop(None)

    asyncio.run(main())


async def _first(call: Any) -> bytes:
    async for item in call:
        return bytes(item)
    raise AssertionError("the stream ended empty")


def _settings(*argv: str) -> config.Settings:
    parser = argparse.ArgumentParser(prog="cairn history")
    config.add_service_flags(parser, "127.0.0.1:0")
    return config.settings_from_args(parser.parse_args(argv))


def test_a_service_starts_only_with_a_good_credential_or_insecure_no_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CAIRN_INTERNAL_CREDENTIAL", "CAIRN_INSECURE_NO_AUTH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        SystemExit, match="cairn history: no internal credential: set CAIRN_INTERNAL_CREDENTIAL"
    ):
        internal_auth.refuse_start_without_credential(_settings(), "history")
    with pytest.raises(SystemExit, match="at least 16 characters"):
        internal_auth.refuse_start_without_credential(_settings("--internal-credential=short"), "history")
    with pytest.raises(SystemExit, match="printable ASCII"):
        internal_auth.refuse_start_without_credential(
            _settings("--internal-credential=" + "é" * 20), "history"
        )
    internal_auth.refuse_start_without_credential(_settings("--internal-credential=" + CREDENTIAL), "history")
    internal_auth.refuse_start_without_credential(_settings("--insecure-no-auth"), "history")
    assert internal_auth.server_interceptors(_settings("--insecure-no-auth"), "history") == []

    monkeypatch.setenv("CAIRN_INTERNAL_CREDENTIAL", CREDENTIAL)
    assert _settings().internal_credential == CREDENTIAL
    monkeypatch.setenv("CAIRN_INSECURE_NO_AUTH", "1")
    assert _settings().insecure_no_auth
