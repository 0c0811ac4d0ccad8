"""One history read for many watchers: the watchers of a run that one notice
wakes stand at the same point of its log and ask history the same question, so
identical ListRunEvents calls in flight at once share one call and its answer.
N watchers of a run then cost history one read per change, not N."""

from __future__ import annotations

import asyncio

from cairn.internal.v1 import history_service_pb2 as hpb
from services.frontend.backend import HISTORY, Backend, shared_task


class SharedReads:
    """ListRunEvents with identical concurrent calls coalesced (single flight)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._in_flight: dict[bytes, asyncio.Future[hpb.ListRunEventsResponse]] = {}

    async def list_run_events(self, request: hpb.ListRunEventsRequest) -> hpb.ListRunEventsResponse:
        """History's answer to request, shared with every identical request made
        while it is in flight. A caller that goes away does not cancel the
        read for the others, and the read is not bounded by the deadline of
        the caller that began it (each caller's own call ends at its own)."""
        key = request.SerializeToString(deterministic=True)
        read = self._in_flight.get(key)
        if read is None:
            read = shared_task(self._backend.call(HISTORY, "ListRunEvents", request))
            self._in_flight[key] = read
            read.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(read)

    def _done(self, key: bytes, read: asyncio.Future[hpb.ListRunEventsResponse]) -> None:
        if self._in_flight.get(key) is read:
            del self._in_flight[key]
        if not read.cancelled():
            read.exception()  # retrieved here: every waiter that is left gets it from shield
