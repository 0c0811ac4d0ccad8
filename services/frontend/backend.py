"""The internal services the frontend forwards to, called by name, with their
addresses for the UNAVAILABLE message a client sees when one is down."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from cairn import keys
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from services.common.errors import unavailable
from services.frontend.caller import CALLER

HISTORY = "history"  # run state: runs, steps, waits, schedules
MATCHING = "matching"  # workers, queues, the long-poll
CALL_TIMEOUT = 15.0


class Backend:
    """The stubs of history and matching."""

    def __init__(
        self,
        history: hgrpc.HistoryServiceStub,
        history_address: str,
        matching: mgrpc.MatchingServiceStub,
        matching_address: str,
    ) -> None:
        self._stubs: dict[str, Any] = {HISTORY: history, MATCHING: matching}
        self._names = {
            HISTORY: f"history service at {history_address}",
            MATCHING: f"matching service at {matching_address}",
        }

    async def call(self, backend: str, method: str, request: Message, timeout: float = CALL_TIMEOUT) -> Any:
        """Calls `method` of `backend` (HISTORY or MATCHING); a downed service
        becomes UNAVAILABLE naming it, any other failure is raised as it came.
        Matching is told the caller's key id (it binds a worker id to its key)."""
        caller = CALLER.get()
        metadata = (
            ((keys.CALLER_KEY_ID, caller.key_id),) if caller is not None and backend == MATCHING else ()
        )
        try:
            return await getattr(self._stubs[backend], method)(request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise unavailable(f"{self._names[backend]} unavailable: {exc.details()}") from None
            raise
