"""Limits per API key (issue 14: no client may starve the others): a token
bucket of requests per key (`rate` a second, up to `burst` at once), and a
bound on the long polls and streams a key holds open at once (PollAttempt,
WaitRun, WatchRun, WatchRuns). A call over either is refused
RESOURCE_EXHAUSTED right after it is authenticated, before anything reads its
fields, so a refused call writes nothing; the message names the limit and the
key's id, and the trailing metadata cairn.limits.RETRY_AFTER_KEY says after how
many milliseconds a retry may pass (the HTTP API sends it as Retry-After, the
SDK waits that long before retrying an idempotent call).

Each frontend replica keeps its own counts, so N frontends let a key through N
times the rate. Cheap on the hot path: per call one dictionary lookup, a move
to its end and a few float operations, no lock (the frontend serves every call
on one event loop); memory is bounded by the keys seen lately: a key whose
bucket has filled up again and that holds no stream is forgotten (a full bucket
is what a key seen for the first time gets), the longest idle checked on each
call.

Without authentication (--insecure-no-auth) nothing is limited: there is no
key to count by, and the peer address does not stand for a caller (every call
of the HTTP API comes from the frontend's own loopback channel, so the HTTP
clients and the dashboard would share one bucket; callers behind one NAT,
proxy or host share an address), and a cluster without auth refuses no caller
anything else either."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from cairn.limits import DEFAULT_KEY_RATE, DEFAULT_KEY_STREAMS, KEY_BURST_SECONDS, RETRY_AFTER_KEY
from services.common.config import Settings
from services.common.errors import ServiceError
from services.frontend.routes import RUNS, WORKERS, path

# The routes that hold a stream slot while they are served: the long polls and the streams.
HELD = frozenset(
    {path(WORKERS, "PollAttempt"), path(RUNS, "WaitRun"), path(RUNS, "WatchRun"), path(RUNS, "WatchRuns")}
)
HELD_NAMES = "PollAttempt, WaitRun, WatchRun, WatchRuns"
# After a refusal by the stream bound: when a slot frees is not known, so a retry
# is suggested after this long.
STREAM_RETRY_SECONDS = 1.0
# Entries looked at for forgetting per call: more than the one a call may add, so
# the table shrinks when keys go quiet.
_FORGET_PER_CALL = 2


def default_burst(rate: float) -> float:
    """The burst when none is set: KEY_BURST_SECONDS of the rate, at least one request."""
    return max(1.0, rate * KEY_BURST_SECONDS)


@dataclass(frozen=True)
class Limits:
    """rate: requests a second per key (0: no limit); burst: requests at once
    (at least 1); streams: long polls and streams open at once per key (0: no
    limit)."""

    rate: float = DEFAULT_KEY_RATE
    burst: float = default_burst(DEFAULT_KEY_RATE)
    streams: int = DEFAULT_KEY_STREAMS

    @property
    def off(self) -> bool:
        return not self.rate and not self.streams


def key_limits(settings: Settings) -> KeyLimits | None:
    """The frontend's limits from its --key-rate, --key-burst and --key-streams;
    None when both are 0 (no limit)."""
    burst = default_burst(settings.key_rate) if settings.key_burst is None else settings.key_burst
    limits = Limits(settings.key_rate, burst, settings.key_streams)
    return None if limits.off else KeyLimits(limits)


class _Key:
    """A key's bucket (tokens at `stamp`) and its open streams."""

    __slots__ = ("open", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.open = 0


def _retry_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def refusal(limit: str, key_id: str, detail: str, retry_seconds: float) -> ServiceError:
    """RESOURCE_EXHAUSTED naming the limit and the key, with the retry delay in
    the trailing metadata RETRY_AFTER_KEY (whole milliseconds, at least 1)."""
    ms = _retry_ms(retry_seconds)
    return ServiceError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{limit} of API key {key_id}: {detail}; retry after {ms} ms",
        ((RETRY_AFTER_KEY, str(ms)),),
    )


class KeyLimits:
    """The counts of every key seen lately, and the checks of its calls."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        if limits.rate < 0 or limits.streams < 0 or (limits.rate and limits.burst < 1):
            raise ValueError(f"invalid key limits: {limits}")
        self.limits = limits
        self._rate = limits.rate
        self._burst = float(limits.burst)
        self._streams = limits.streams
        self._clock = clock
        self._keys: OrderedDict[str, _Key] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._keys)

    def admit(self, key_id: str, held: bool = False) -> None:
        """Counts one call of key_id, which holds a stream slot until release()
        when `held`; RESOURCE_EXHAUSTED (ServiceError) when it is over a limit
        (then nothing is held). A refusal by the rate costs no token; one by the
        stream bound costs the token the call took."""
        now = self._clock()
        self._forget(now)
        keys = self._keys
        entry = keys.get(key_id)
        if entry is None:
            entry = keys[key_id] = _Key(self._burst, now)
        else:
            keys.move_to_end(key_id)
        rate = self._rate
        if rate:
            tokens = min(self._burst, entry.tokens + (now - entry.stamp) * rate)
            entry.stamp = now
            if tokens < 1.0:
                entry.tokens = tokens
                raise refusal(
                    "request rate limit",
                    key_id,
                    f"more than {rate:g} requests/s (burst {self._burst:g}) at this frontend",
                    (1.0 - tokens) / rate,
                )
            entry.tokens = tokens - 1.0
        if held:
            if self._streams and entry.open >= self._streams:
                raise refusal(
                    "stream limit",
                    key_id,
                    f"{entry.open} long polls and streams open ({HELD_NAMES}), the most a key may hold "
                    "at this frontend",
                    STREAM_RETRY_SECONDS,
                )
            entry.open += 1

    def release(self, key_id: str) -> None:
        """A held call of key_id ended (admit(held=True) admitted it)."""
        entry = self._keys.get(key_id)
        if entry is not None and entry.open > 0:
            entry.open -= 1

    def _forget(self, now: float) -> None:
        """Looks at the longest idle keys: one whose bucket is full again and that
        holds nothing is forgotten, one holding a stream goes to the end; stops at
        the first that is neither (every key after it was seen more lately)."""
        keys = self._keys
        rate, burst = self._rate, self._burst
        for _ in range(_FORGET_PER_CALL):
            if not keys:
                return
            key_id, entry = next(iter(keys.items()))
            if entry.open:
                keys.move_to_end(key_id)
            elif not rate or entry.tokens + (now - entry.stamp) * rate >= burst:
                del keys[key_id]
            else:
                return
