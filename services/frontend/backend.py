"""The internal services the frontend forwards to, called by name. A call rides
out a restart of the service it goes to: it waits for the service to be
reachable again (RETRY_SECONDS at most, bounded by its caller's deadline)
before it is sent, and a call that is safe to repeat (REPEATABLE, repeatable())
is sent again after an UNAVAILABLE (or a CANCELLED of a service shutting
down) met on the way; a final failure is UNAVAILABLE naming the service and its
address."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cairn import addresses, keys
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.common.errors import ServiceError
from services.frontend.caller import CALLER

T = TypeVar("T")

HISTORY = "history"  # run state: runs, steps, waits, schedules
MATCHING = "matching"  # workers, queues, the long-poll
CALL_TIMEOUT = 15.0
# How long a call waits, at most, for a service that cannot be reached (being
# restarted) and goes on sending a repeatable one that met UNAVAILABLE.
RETRY_SECONDS = 10.0
# A poll's: a worker's capacity waits in its poll, and a worker with other
# frontends should try one of them soon when this one's matching is gone for
# good (it polls again anyway, forever). A matching restarting, with no other
# replica, is back well within it; with replicas the channel is never down.
POLL_RETRY_SECONDS = 2.0
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
# Left of the caller's deadline for the answer naming the service that is down.
DEADLINE_MARGIN = 0.25
HEALTH_TIMEOUT = 2.0
# A call that met these on its way met a service going away: its connection
# dropped (UNAVAILABLE), or the service cancelled it as it shut down
# (CANCELLED; a cancellation of the frontend's own is asyncio's, not this).
GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
# Sent with a final UNAVAILABLE: the frontend has waited and retried already, so
# a client channel's retry policy must not send the call again (gRPC's server
# pushback: a negative delay is "do not retry"), which would end in a bare
# DEADLINE_EXCEEDED instead of this answer naming the service that is down. A
# client's own retries decide for themselves.
NO_CHANNEL_RETRY = (("grpc-retry-pushback-ms", "-1"),)

# The deadline (time.monotonic()) of the public call being served, None for
# none: serving.py sets it for every call, so a call to a backend made for it
# gives up in time to say which service is down.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("cairn_deadline", default=None)


def shared_task(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task for work done for several calls at once (a read shared by a run's
    watchers, a run's feed): in a context of its own, so that no one caller's
    deadline (DEADLINE) or key bounds it; each caller's own wait ends at its own."""
    return asyncio.get_running_loop().create_task(work, context=contextvars.Context())


# Methods whose repetition does nothing more than the first call did: reads;
# settings that set a state (a cancel, a pause, a queue's settings, a key's
# revocation, a worker's registration, the declared schedules); polls; an
# attempt's heartbeat and writes, fenced on the attempt and its token (a step
# record sent again is answered as the first, a second finish is refused as the
# attempt having ended, metadata is replaced whole). Not here, so sent once:
# ReplayRun, SendEvent, CompleteWaitToken, CreateSchedule, DeleteSchedule,
# CreateKey and AppendRunOutput (log lines would be appended twice); triggers
# only with an idempotency key or a request id, wait tokens with an idempotency
# key, BatchWrite without output (repeatable()).
REPEATABLE: dict[str, frozenset[str]] = {
    HISTORY: frozenset(
        {
            "GetRun",
            "ListRuns",
            "ListRunLogs",
            "ListRunEvents",
            "GetWaitToken",
            "ListSchedules",
            "CancelRun",
            "PauseSchedule",
            "ResumeSchedule",
            "SyncDeclaredSchedules",
            "Heartbeat",
            "RecordStep",
            "FinishAttempt",
            "UpdateRunMetadata",
        }
    ),
    MATCHING: frozenset(
        {
            "RegisterWorker",
            "PollAttempt",
            "UpdateQueue",
            "ListQueues",
            "PauseQueue",
            "ResumeQueue",
            "ListWorkers",
            "ListKeys",
            "RevokeKey",
            "AuthenticateKey",
        }
    ),
}


def repeatable(backend: str, method: str, request: Message) -> bool:
    """Whether sending request again after an UNAVAILABLE that met it on its
    way (the connection dropped: history may have applied it) does nothing
    more than once. A trigger is, when every run it makes carries an
    idempotency key or a request id (history answers the run the key or id
    made; the SDK and the CLI set a request id on every trigger without a
    key); without either it would make a second run."""
    if method in REPEATABLE[backend]:
        return True
    if isinstance(request, rpb.TriggerRunRequest):
        return _deduped(request)
    if isinstance(request, rpb.BatchTriggerRunsRequest):  # TriggerRuns and BatchTriggerRuns
        return all(_deduped(r) for r in request.runs)
    if isinstance(request, wspb.CreateWaitTokenRequest):
        return bool(request.idempotency_key)
    if isinstance(request, wpb.BatchWriteRequest):
        return not any(w.HasField("append_run_output") for w in request.writes)
    return False


def _deduped(trigger: rpb.TriggerRunRequest) -> bool:
    """A trigger that history answers with its first run when sent again."""
    return bool(trigger.idempotency_key or trigger.request_id)


class Backend:
    """Calls to history and matching, on their channels (grpc_server.channel)."""

    def __init__(
        self,
        history: grpc.aio.Channel,
        history_address: str,
        matching: grpc.aio.Channel,
        matching_address: str,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._channels = {HISTORY: history, MATCHING: matching}
        self._stubs: dict[str, Any] = {
            HISTORY: hgrpc.HistoryServiceStub(history),  # type: ignore[no-untyped-call]
            MATCHING: mgrpc.MatchingServiceStub(matching),  # type: ignore[no-untyped-call]
        }
        self._health = {name: health_pb2_grpc.HealthStub(ch) for name, ch in self._channels.items()}
        self._addresses = {HISTORY: history_address, MATCHING: matching_address}
        self.retry_seconds = retry_seconds

    def name(self, backend: str) -> str:
        """How messages name a backend: history service at 127.0.0.1:7375."""
        return f"{backend} service at {self._addresses[backend]}"

    async def call(self, backend: str, method: str, request: Message, timeout: float = CALL_TIMEOUT) -> Any:
        """Calls `method` of `backend` (HISTORY or MATCHING) and returns its
        answer. It is sent once the service can be reached, waiting for it up to
        the retry budget (RETRY_SECONDS, POLL_RETRY_SECONDS for a poll, and the
        caller's deadline); UNAVAILABLE
        on the way sends it again within the budget when repeatable(). A
        service still down then, or a deadline exceeded, is UNAVAILABLE naming
        it; any other failure is raised as it came. Matching is told the
        caller's key id (it binds a worker id to its key)."""
        caller = CALLER.get()
        metadata = (
            ((keys.CALLER_KEY_ID, caller.key_id),) if caller is not None and backend == MATCHING else ()
        )
        send = getattr(self._stubs[backend], method)
        give_up = time.monotonic() + self._budget(POLL_RETRY_SECONDS if method == "PollAttempt" else None)
        delay = FIRST_DELAY
        while True:
            if not await self._reachable(backend, give_up):
                raise await self._down(backend)
            try:
                # wait_for_ready: not sent before the service is connected (a
                # connection lost since the check above is waited out, not failed).
                return await send(request, timeout=timeout, metadata=metadata, wait_for_ready=True)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in GONE and repeatable(backend, method, request):
                    if time.monotonic() + delay < give_up:
                        await asyncio.sleep(delay)
                        delay = min(MAX_DELAY, delay * 2)
                        continue
                if code in (*GONE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise self._unavailable(backend, exc.details() or code.name) from None
                raise

    def _budget(self, cap: float | None = None) -> float:
        """Seconds a call may wait for its service: the retry budget (at most
        cap), cut to end a moment before the caller's deadline."""
        budget = self.retry_seconds if cap is None else min(cap, self.retry_seconds)
        deadline = DEADLINE.get()
        if deadline is None:
            return budget
        return max(0.0, min(budget, deadline - time.monotonic() - DEADLINE_MARGIN))

    async def _reachable(self, backend: str, give_up: float) -> bool:
        """Whether the backend's channel is connected (to some replica) or
        connects before give_up (gRPC reconnects on its own, within
        addresses.RECONNECT_OPTIONS' backoff)."""
        channel = self._channels[backend]
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            left = give_up - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), left)
            except TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
        return True

    async def _down(self, backend: str) -> ServiceError:
        """UNAVAILABLE naming the backend that could not be reached, and why
        when a connection to it says (addresses.unreachable_reason, off the
        event loop: it connects)."""
        reason = await asyncio.to_thread(addresses.unreachable_reason, self._addresses[backend], backend)
        return self._unavailable(backend, reason or "it cannot be reached")

    def _unavailable(self, backend: str, why: str) -> ServiceError:
        return ServiceError(
            grpc.StatusCode.UNAVAILABLE, f"{self.name(backend)} is unavailable: {why}", NO_CHANNEL_RETRY
        )

    async def healthy(self, backend: str) -> bool:
        """Whether the backend's standard health service answers SERVING (one
        check; a list of replicas answers from one of them)."""
        try:
            reply = await self._health[backend].Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
