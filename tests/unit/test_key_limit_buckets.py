"""Limits per API key at the frontend (services/frontend/caller_limits.py), as
pure logic on a fake clock: the token bucket (rate, burst, refill, the retry
delay it names), the bound on open long polls and streams, keys apart from
each other, idle keys forgotten; the interceptor that applies them (nothing
reaches the handler when refused, a stream's slot freed when it ends); the
frontend's flags; and the HTTP answer's Retry-After. No server."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from cairn.limits import DEFAULT_KEY_RATE, DEFAULT_KEY_STREAMS, RETRY_AFTER_KEY
from services.common import config
from services.common.config import add_service_flags, settings_from_args
from services.common.errors import ServiceError
from services.frontend import caller_limits
from services.frontend.caller import CALLER, Caller
from services.frontend.caller_limits import KeyLimits, Limits, key_limits
from services.frontend.http import calls
from services.frontend.http.errors import HttpError, error_response
from services.frontend.interceptors import KeyLimiting, chain
from services.frontend.routes import ROUTES, RUNS, path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal(limits: KeyLimits, key: str, held: bool = False) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        limits.admit(key, held)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    return info.value


def retry_ms(error: ServiceError) -> int:
    [(key, value)] = error.trailing_metadata
    assert key == RETRY_AFTER_KEY
    return int(value)


# ---- the bucket ------------------------------------------------------------------------------


def test_a_key_sends_its_burst_at_once_then_its_rate_and_is_told_how_long_to_wait() -> None:
    clock = Clock()
    limits = KeyLimits(Limits(rate=10, burst=5, streams=0), clock)
    for _ in range(5):
        limits.admit("k1")
    error = refusal(limits, "k1")
    assert "request rate limit" in error.message and "k1" in error.message
    assert "10 requests/s (burst 5)" in error.message and "retry after 100 ms" in error.message
    assert retry_ms(error) == 100  # one token comes back in 1/rate s
    clock.now += 0.04
    assert 59 <= retry_ms(refusal(limits, "k1")) <= 61  # refusals cost nothing: the wait shrinks
    clock.now += 0.061
    limits.admit("k1")
    refusal(limits, "k1")
    clock.now += 10  # the bucket fills up to its burst, no further
    for _ in range(5):
        limits.admit("k1")
    refusal(limits, "k1")


def test_keys_have_buckets_of_their_own() -> None:
    limits = KeyLimits(Limits(rate=1, burst=2, streams=0), Clock())
    limits.admit("a")
    limits.admit("a")
    refusal(limits, "a")
    limits.admit("b")
    limits.admit("b")
    refusal(limits, "b")


def test_the_retry_delay_is_at_least_a_millisecond_and_rounded_up() -> None:
    clock = Clock()
    limits = KeyLimits(Limits(rate=3, burst=1, streams=0), clock)
    limits.admit("k")
    assert retry_ms(refusal(limits, "k")) == 334
    clock.now += 0.3333333
    assert retry_ms(refusal(limits, "k")) == 1


def test_a_rate_of_zero_is_no_limit() -> None:
    limits = KeyLimits(Limits(rate=0, burst=1, streams=0), Clock())
    for _ in range(10_000):
        limits.admit("k")


def test_invalid_limits_are_refused() -> None:
    for bad in (Limits(rate=-1), Limits(rate=5, burst=0.5), Limits(streams=-1)):
        with pytest.raises(ValueError):
            KeyLimits(bad)


# ---- the stream bound ------------------------------------------------------------------------


def test_the_n_plus_first_open_stream_of_a_key_is_refused_until_one_ends() -> None:
    limits = KeyLimits(Limits(rate=0, burst=1, streams=3), Clock())
    for _ in range(3):
        limits.admit("a", held=True)
    error = refusal(limits, "a", held=True)
    assert "stream limit" in error.message and "API key a" in error.message
    assert "3 long polls and streams open" in error.message and "WatchRuns" in error.message
    assert retry_ms(error) == round(caller_limits.STREAM_RETRY_SECONDS * 1000)
    limits.admit("a")  # calls that hold nothing still pass
    limits.admit("b", held=True)  # another key's streams are its own
    limits.release("a")
    limits.admit("a", held=True)
    refusal(limits, "a", held=True)
    limits.release("unknown")  # harmless


def test_a_stream_refused_by_the_bound_costs_its_token_and_one_refused_by_the_rate_holds_nothing() -> None:
    clock = Clock()
    limits = KeyLimits(Limits(rate=1, burst=2, streams=1), clock)
    limits.admit("a", held=True)
    assert "stream limit" in refusal(limits, "a", held=True).message
    assert "request rate limit" in refusal(limits, "a", held=True).message  # both tokens spent
    limits.release("a")
    clock.now += 1
    limits.admit("a", held=True)  # the refusal by the rate did not take a slot


# ---- memory: idle keys are forgotten ---------------------------------------------------------


def test_keys_idle_until_their_bucket_is_full_are_forgotten() -> None:
    clock = Clock()
    limits = KeyLimits(Limits(rate=10, burst=20, streams=5), clock)
    for i in range(1000):
        limits.admit(f"k{i}")
    assert len(limits) == 1000  # none idle yet: every bucket is short of a token
    clock.now += 2.0  # every bucket full again
    for _ in range(600):
        limits.admit("busy")
        clock.now += 0.1  # one token a call: busy is never refused
    assert len(limits) == 1  # two forgotten per call: the table shrinks as keys go quiet
    limits.admit("k1")  # a forgotten key starts again with a full bucket
    for _ in range(19):
        limits.admit("k1")
    refusal(limits, "k1")


def test_a_key_holding_a_stream_is_not_forgotten() -> None:
    clock = Clock()
    limits = KeyLimits(Limits(rate=10, burst=1, streams=1), clock)
    limits.admit("watcher", held=True)
    clock.now += 3600
    for i in range(50):
        limits.admit(f"other{i}")
        clock.now += 1
    refusal(limits, "watcher", held=True)  # its open stream is still counted
    limits.release("watcher")
    clock.now += 1
    limits.admit("watcher", held=True)


# ---- the interceptor -------------------------------------------------------------------------


class Context:
    pass


def wrapped_unary(limits: KeyLimits, route_path: str, calls_made: list[str]) -> Any:
    async def behaviour(request: Any, context: Any) -> str:
        calls_made.append(route_path)
        return "answer"

    return KeyLimiting(ROUTES, limits).wrap(ROUTES[route_path], behaviour)


def test_a_refused_call_does_not_reach_the_handler_and_a_long_poll_holds_its_slot_while_served() -> None:
    limits = KeyLimits(Limits(rate=0, burst=1, streams=1), Clock())
    made: list[str] = []
    wait_run = path(RUNS, "WaitRun")
    get_run = path(RUNS, "GetRun")

    async def main() -> None:
        token = CALLER.set(Caller("k", "a", "client"))
        try:
            assert await wrapped_unary(limits, get_run, made)(None, Context()) == "answer"
            assert await wrapped_unary(limits, wait_run, made)(None, Context()) == "answer"
            limits.admit("k", held=True)  # a long poll of k in flight elsewhere
            with pytest.raises(ServiceError, match="stream limit of API key k"):
                await wrapped_unary(limits, wait_run, made)(None, Context())
            limits.release("k")
        finally:
            CALLER.reset(token)
        # without a caller (auth off) nothing is counted
        for _ in range(3):
            await wrapped_unary(limits, wait_run, made)(None, Context())

    asyncio.run(main())
    assert made == [get_run, wait_run, wait_run, wait_run, wait_run]


def test_a_stream_frees_its_slot_when_it_ends_or_is_cancelled() -> None:
    limits = KeyLimits(Limits(rate=0, burst=1, streams=1), Clock())
    route = ROUTES[path(RUNS, "WatchRuns")]

    async def forever(request: Any, context: Any) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    stream = KeyLimiting(ROUTES, limits).wrap_stream(route, forever)

    async def main() -> None:
        CALLER.set(Caller("k", "a", "client"))
        first = stream(None, Context())
        assert await anext(first) == 0
        second = stream(None, Context())
        with pytest.raises(ServiceError, match="stream limit"):
            await anext(second)
        await first.aclose()  # the client went away
        third = stream(None, Context())
        assert await anext(third) == 0
        await third.aclose()

    asyncio.run(main())


def test_the_chain_limits_right_after_authorization_and_not_at_all_without_auth() -> None:
    limits = KeyLimits(Limits())
    layers = chain(ROUTES, object(), limits)  # type: ignore[arg-type]
    names = [type(layer).__name__ for layer in layers]
    assert names[names.index("Authorization") + 1] == "KeyLimiting"
    assert next(x for x in layers if isinstance(x, KeyLimiting)).limits is limits
    unauthenticated = chain(ROUTES, None, limits)
    assert next(x for x in unauthenticated if isinstance(x, KeyLimiting)).limits is None


# ---- the frontend's flags --------------------------------------------------------------------


def parse(argv: list[str]) -> Any:
    parser = argparse.ArgumentParser(prog="cairn frontend")
    add_service_flags(parser, "127.0.0.1:7373")
    return settings_from_args(parser.parse_args(argv))


def test_the_flags_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CAIRN_KEY_RATE", "CAIRN_KEY_BURST", "CAIRN_KEY_STREAMS"):
        monkeypatch.delenv(name, raising=False)
    settings = parse([])
    assert (settings.key_rate, settings.key_burst, settings.key_streams) == (
        DEFAULT_KEY_RATE,
        None,
        DEFAULT_KEY_STREAMS,
    )
    made = key_limits(settings)
    assert made is not None and made.limits == Limits()
    assert made.limits.burst == 2 * DEFAULT_KEY_RATE
    settings = parse(["--key-rate", "5", "--key-streams", "3"])
    made = key_limits(settings)
    assert made is not None and made.limits == Limits(5, 10, 3)
    monkeypatch.setenv("CAIRN_KEY_RATE", "0.5")
    monkeypatch.setenv("CAIRN_KEY_BURST", "4")
    made = key_limits(parse([]))
    assert made is not None and made.limits == Limits(0.5, 4, DEFAULT_KEY_STREAMS)
    assert key_limits(parse(["--key-rate", "0", "--key-streams", "0"])) is None  # both off
    assert {"key-rate", "key-burst", "key-streams"} <= config.SERVICE_FLAGS["frontend"]


@pytest.mark.parametrize(
    "argv", [["--key-rate", "-1"], ["--key-rate", "x"], ["--key-burst", "0.5"], ["--key-streams", "1.5"]]
)
def test_bad_values_stop_the_start(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert argv[0] in capsys.readouterr().err


# ---- HTTP: Retry-After -----------------------------------------------------------------------


def test_a_refusal_with_a_retry_delay_is_429_with_retry_after_in_whole_seconds() -> None:
    metadata = grpc.aio.Metadata((RETRY_AFTER_KEY, "1200"))
    error = calls.refused(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "request rate limit of API key k: ...", metadata
    )
    assert isinstance(error, HttpError) and error.retry_after == 1.2 and error.status == 429
    answer = error_response(error.code, error.message, error.retry_after)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "2"
    assert error_response(error.code, "m", 0.001).headers["retry-after"] == "1"
    full = calls.refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue 'q' is full", grpc.aio.Metadata())
    assert full.retry_after is None
    assert "retry-after" not in error_response(full.code, full.message, full.retry_after).headers
