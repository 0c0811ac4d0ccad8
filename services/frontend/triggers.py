"""Group commit of triggers: TriggerRun calls that arrive while one is on its way
to history go together as one TriggerRuns call, which history commits in one
transaction, each run answered as if alone (cairn.coalesce). A trigger that
arrives while none is in flight goes at once as its own TriggerRun."""

from __future__ import annotations

from cairn import status_codes
from cairn.coalesce import Coalescer
from cairn.v1 import run_service_pb2 as rpb
from services.common.errors import ServiceError
from services.frontend.backend import DEADLINE, HISTORY, Backend


class Triggers:
    """Validated TriggerRun requests on their way to history."""

    def __init__(self, backend: Backend, timeout: float) -> None:
        self.b = backend
        self.timeout = timeout
        self._calls: Coalescer[rpb.TriggerRunRequest, rpb.TriggerRunResponse] = Coalescer(
            self._send_one, self._send_many
        )

    async def trigger(self, request: rpb.TriggerRunRequest) -> rpb.TriggerRunResponse:
        """History's answer to this request, or its refusal as a ServiceError."""
        return await self._calls.submit(request, self.timeout)

    async def _send_one(
        self, request: rpb.TriggerRunRequest, timeout: float | None
    ) -> rpb.TriggerRunResponse:
        DEADLINE.set(None)  # a call of the coalescer's, not of one caller (each has its own deadline)
        response: rpb.TriggerRunResponse = await self.b.call(HISTORY, "TriggerRun", request, self.timeout)
        return response

    async def _send_many(
        self, requests: list[rpb.TriggerRunRequest], timeout: float | None
    ) -> list[rpb.TriggerRunResponse | BaseException]:
        DEADLINE.set(None)
        response = await self.b.call(
            HISTORY, "TriggerRuns", rpb.BatchTriggerRunsRequest(runs=requests), self.timeout
        )
        return [
            r.triggered
            if r.WhichOneof("result") == "triggered"
            else ServiceError(status_codes.from_int(r.error.code), r.error.message)
            for r in response.results
        ]
