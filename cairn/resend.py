"""Which client calls may be sent again after UNAVAILABLE, and for how long: the
rule the SDK and the CLI share (issue 15, "restarts no client notices").

A call that met UNAVAILABLE may have been applied (its connection dropped after
the frontend took it) or not (nothing listened, a frontend shutting down
refused it, or the frontend answered that history or matching is down). Only a
request whose repetition does nothing more than its first sending is sent
again: reads, long polls and watches (they resume), settings that set a state,
cancels, triggers carrying a request id or an idempotency key, wait tokens with
an idempotency key, and an attempt's heartbeats and writes (fenced on the
attempt; a step record sent again is answered as the first, a finish whose
first sending landed is refused as "ended"). A cancel, a token's completion or
a schedule's deletion sent again after its first landed is refused as already
done; the SDK and the CLI read the result back then (see their callers). Not
sent again: SendEvent, ReplayRun, CreateSchedule, CreateKey, a wait token
without an idempotency key, a trigger with neither (the SDK and the CLI give
every trigger a request id)."""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from typing import Any

from cairn.v1 import (
    key_service_pb2,
    queue_service_pb2,
    run_service_pb2,
    schedule_service_pb2,
    wait_service_pb2,
    worker_service_pb2,
)

# How long a call is sent again after UNAVAILABLE, at most (and never past the
# call's own deadline): long enough for a service's restart, or for a client
# with one frontend to see it come back.
RESEND_SECONDS = 30.0
FIRST_DELAY = 0.05
MAX_DELAY = 1.0

# Requests sent again as they are.
RESENDABLE: frozenset[type[Any]] = frozenset(
    {
        run_service_pb2.GetRunRequest,
        run_service_pb2.ListRunsRequest,
        run_service_pb2.WaitRunRequest,
        run_service_pb2.ListRunLogsRequest,
        run_service_pb2.WatchRunRequest,
        run_service_pb2.WatchRunsRequest,
        run_service_pb2.CancelRunRequest,
        wait_service_pb2.GetWaitTokenRequest,
        wait_service_pb2.CompleteWaitTokenRequest,
        schedule_service_pb2.ListSchedulesRequest,
        schedule_service_pb2.PauseScheduleRequest,
        schedule_service_pb2.ResumeScheduleRequest,
        schedule_service_pb2.DeleteScheduleRequest,
        queue_service_pb2.ListQueuesRequest,
        queue_service_pb2.ListWorkersRequest,
        queue_service_pb2.PauseQueueRequest,
        queue_service_pb2.ResumeQueueRequest,
        queue_service_pb2.UpdateQueueRequest,
        key_service_pb2.ListKeysRequest,
        key_service_pb2.RevokeKeyRequest,
        worker_service_pb2.RegisterWorkerRequest,
        worker_service_pb2.PollAttemptRequest,
        worker_service_pb2.HeartbeatRequest,
        worker_service_pb2.RecordStepRequest,
        worker_service_pb2.FinishAttemptRequest,
        worker_service_pb2.UpdateRunMetadataRequest,
    }
)

# How the frontend names a service it could not reach (services/frontend/backend.py:
# "history service at 127.0.0.1:7375 is unavailable: ..."): such an UNAVAILABLE
# came from a frontend that answered.
_SERVICE_DOWN = re.compile(r"\b(history|matching) service at \S+ is unavailable")


def new_request_id() -> str:
    """A new request id for a trigger (TriggerRunRequest.request_id): a UUID of
    version 7 (RFC 9562), 48 bits of Unix time in milliseconds then 74 random
    bits, so the ids a client makes one after another sort by time and land at
    the end of history's index (runs_request_id) instead of on a random page of
    it, which writes less WAL."""
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # the version, 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the variant, RFC 9562's
    return str(uuid.UUID(int=value))


def resendable(request: Any) -> bool:
    """Whether sending request again after UNAVAILABLE does nothing more than
    sending it once (see the module's docstring)."""
    if isinstance(request, run_service_pb2.TriggerRunRequest):
        return bool(request.request_id or request.idempotency_key)
    if isinstance(request, run_service_pb2.BatchTriggerRunsRequest):
        return bool(request.runs) and all(r.request_id or r.idempotency_key for r in request.runs)
    if isinstance(request, wait_service_pb2.CreateWaitTokenRequest):
        return bool(request.idempotency_key)
    return type(request) in RESENDABLE


def names_a_service(details: str) -> bool:
    """Whether an UNAVAILABLE's message is a frontend's naming the service behind
    it that is down (history or matching), rather than the channel's own (no
    frontend answered)."""
    return bool(_SERVICE_DOWN.search(details))


def next_delay(delay: float) -> float:
    """The pause after one that lasted delay: doubled up to MAX_DELAY."""
    return min(MAX_DELAY, delay * 2)


def jittered(delay: float) -> float:
    """A pause between a half and the whole of delay, so the clients a restart
    refused together do not all come back at the same instant."""
    return delay * (0.5 + 0.5 * random.random())
