"""History's gRPC API: maps requests onto RunStore transactions and announces
committed changes on NATS. Callers (frontend, matching) have validated input."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone

import grpc

from cairn import payloads
from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.statuses import RUN_STATUS_BY_NAME, RUN_STATUS_NAMES, STEP_STATUS_NAMES
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common import bus as bus_mod
from services.common.bus import Bus
from services.common.errors import invalid, rpc
from services.history import convert
from services.history.store import Outcome, RunStore, parse_run_id
from services.history.timers import TimerLoop

OUTCOMES = {wpb.ATTEMPT_OUTCOME_COMPLETED: "completed", wpb.ATTEMPT_OUTCOME_FAILED: "failed",
            wpb.ATTEMPT_OUTCOME_SUSPENDED: "suspended"}


def encode_page_token(created_at: datetime, run_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{run_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except ValueError:
        raise invalid("page_token: not a token returned by ListRuns") from None


class HistoryServicer(hgrpc.HistoryServiceServicer):
    """The only writer of run state."""

    def __init__(self, store: RunStore, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self.timers: TimerLoop | None = None

    async def announce(self, outcome: Outcome) -> None:
        """Publishes what a committed transition changed."""
        run, fx = outcome.run, outcome.effects
        if fx.work_ready:
            await self.bus.publish(bus_mod.WORK, {"namespace": run["namespace"], "task_id": run["task_id"]})
        if fx.run_changed:
            await self.bus.publish(bus_mod.RUNS, {"namespace": run["namespace"], "run_id": str(run["id"]),
                                                  "status": run["status"]})
        if fx.timer_due is not None:
            if self.timers is not None:
                self.timers.poke()
            await self.bus.publish(bus_mod.TIMERS, {"due_at": fx.timer_due.isoformat()})

    async def _full_run(self, namespace: str, run_id: uuid.UUID):
        return convert.run(*await self.store.get(namespace, run_id))

    @rpc
    async def TriggerRun(self, request: rpb.TriggerRunRequest, context: grpc.aio.ServicerContext
                         ) -> rpb.TriggerRunResponse:
        outcome, existing = await self.store.trigger(
            request.namespace, request.task_id, request.payload.data,
            request.payload.encoding or payloads.JSON, request.idempotency_key)
        if not existing:
            await self.announce(outcome)
        return rpb.TriggerRunResponse(run=convert.run(outcome.run), existing=existing)

    @rpc
    async def GetRun(self, request: rpb.GetRunRequest, context: grpc.aio.ServicerContext
                     ) -> rpb.GetRunResponse:
        return rpb.GetRunResponse(run=await self._full_run(request.namespace, parse_run_id(request.run_id)))

    @rpc
    async def ListRuns(self, request: rpb.ListRunsRequest, context: grpc.aio.ServicerContext
                       ) -> rpb.ListRunsResponse:
        size = request.page_size or 50
        after = decode_page_token(request.page_token) if request.page_token else None
        statuses = [RUN_STATUS_NAMES[s] for s in request.statuses]
        rows = await self.store.list_runs(request.namespace, request.task_id, statuses, size + 1, after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token(rows[-1]["created_at"], rows[-1]["id"])
        return rpb.ListRunsResponse(runs=[convert.run(r) for r in rows], next_page_token=token)

    @rpc
    async def CancelRun(self, request: rpb.CancelRunRequest, context: grpc.aio.ServicerContext
                        ) -> rpb.CancelRunResponse:
        run_id = parse_run_id(request.run_id)
        outcome = await self.store.cancel(request.namespace, run_id, request.reason)
        await self.announce(outcome)
        return rpb.CancelRunResponse(run=await self._full_run(request.namespace, run_id))

    @rpc
    async def StartAttempt(self, request: hpb.StartAttemptRequest, context: grpc.aio.ServicerContext
                           ) -> hpb.StartAttemptResponse:
        started = await self.store.start_attempt(
            request.namespace, parse_run_id(request.run_id), uuid.UUID(request.claim_token),
            request.worker_id, request.worker_version)
        if started is None:
            return hpb.StartAttemptResponse()
        outcome, steps = started
        await self.announce(outcome)
        run = outcome.run
        return hpb.StartAttemptResponse(assignment=wpb.AttemptAssignment(
            run_id=str(run["id"]), attempt=run["attempt_count"], task_id=run["task_id"],
            payload=convert.payload(run["input"], run["input_encoding"]),
            steps=[convert.step(s) for s in steps],
            lease_duration=convert.duration(self.store.lease_seconds),
            run_created_at=convert.timestamp(run["created_at"])))

    @rpc
    async def Heartbeat(self, request: wpb.HeartbeatRequest, context: grpc.aio.ServicerContext
                        ) -> wpb.HeartbeatResponse:
        due = await self.store.heartbeat(request.namespace, parse_run_id(request.run_id), request.attempt)
        return wpb.HeartbeatResponse(lease_expires_at=convert.timestamp(due))

    @rpc
    async def RecordStep(self, request: wpb.RecordStepRequest, context: grpc.aio.ServicerContext
                         ) -> wpb.RecordStepResponse:
        completed = request.status == cpb.STEP_STATUS_COMPLETED
        step = await self.store.record_step(
            request.namespace, parse_run_id(request.run_id), request.attempt, request.position,
            request.name, STEP_STATUS_NAMES[request.status],
            request.output.data if completed else None,
            (request.output.encoding or payloads.JSON) if completed else None,
            None if completed else convert.error_dict(request.error), request.tries or 1)
        return wpb.RecordStepResponse(step=convert.step(step))

    @rpc
    async def FinishAttempt(self, request: wpb.FinishAttemptRequest, context: grpc.aio.ServicerContext
                            ) -> wpb.FinishAttemptResponse:
        outcome_name = OUTCOMES[request.outcome]
        wake_at = request.wake_at.ToDatetime(tzinfo=timezone.utc) \
            if request.HasField("wake_at") else None
        outcome = await self.store.finish_attempt(
            request.namespace, parse_run_id(request.run_id), request.attempt, outcome_name,
            request.output.data if outcome_name == "completed" else None,
            (request.output.encoding or payloads.JSON) if outcome_name == "completed" else None,
            convert.error_dict(request.error) if outcome_name == "failed" else None, wake_at)
        await self.announce(outcome)
        response = wpb.FinishAttemptResponse(run_status=RUN_STATUS_BY_NAME[outcome.run["status"]])
        if "retry_delay" in outcome.extra:
            response.retry_delay.CopyFrom(convert.duration(outcome.extra["retry_delay"]))
        return response

