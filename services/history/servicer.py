"""History's gRPC API: maps requests onto RunStore and ScheduleStore
transactions and announces committed changes on NATS. Callers (frontend,
matching) have validated input."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc

from cairn import payloads, status_codes
from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.limits import MAX_POLL_ATTEMPTS
from cairn.statuses import RUN_STATUS_BY_NAME, RUN_STATUS_NAMES, STEP_STATUS_NAMES
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.common import bus as bus_mod
from services.common.bus import Bus
from services.common.errors import ServiceError, invalid, rpc
from services.history import convert
from services.history.api.claim import Claimer
from services.history.runs import Effects, NewRun, Outcome, parse_run_id
from services.history.schedules import ScheduleStore
from services.history.store import RunStore
from services.history.timers import TimerLoop

log = logging.getLogger("cairn.history")
OUTCOMES = {
    wpb.ATTEMPT_OUTCOME_COMPLETED: "completed",
    wpb.ATTEMPT_OUTCOME_FAILED: "failed",
    wpb.ATTEMPT_OUTCOME_SUSPENDED: "suspended",
}


def encode_page_token(created_at: datetime, run_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{run_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except ValueError:
        raise invalid("page_token: not a token returned by ListRuns") from None


def _encoding(p: cpb.Payload) -> str:
    return p.encoding or payloads.JSON


def new_run(namespace: str, r: rpb.TriggerRunRequest) -> NewRun:
    return NewRun(
        namespace=namespace,
        task_id=r.task_id,
        data=r.payload.data,
        encoding=_encoding(r.payload),
        idempotency_key=r.idempotency_key or None,
        options=convert.options(r.options),
        parent_run_id=parse_run_id(r.parent_run_id) if r.parent_run_id else None,
    )


def refuse(error: wpb.WriteError, exc: ServiceError) -> None:
    """One write's refusal in a batch answer, as its single call would have failed."""
    error.code = status_codes.to_int(exc.code)
    error.message = exc.message


def wait_spec(namespace: str, r: wpb.FinishAttemptRequest) -> dict[str, Any]:
    """A suspension's wait, from the request (a sleep when only wake_at is set)."""
    if not r.HasField("wait"):
        until = r.wake_at.ToDatetime(tzinfo=UTC)
        return {"kind": "sleep", "position": -1, "name": "wait.sleep", "timeout_at": until}
    w = r.wait
    spec: dict[str, Any] = {
        "kind": w.WhichOneof("kind"),
        "position": w.position,
        "name": w.name,
        "timeout_at": w.timeout_at.ToDatetime(tzinfo=UTC) if w.HasField("timeout_at") else None,
    }
    if spec["kind"] == "event":
        spec.update(event_name=w.event.name, event_key=w.event.key)
    elif spec["kind"] == "token":
        spec.update(token_id=w.token.token_id)
    elif spec["kind"] == "children":
        spec["children"] = [
            NewRun(
                namespace=namespace,
                task_id=c.task_id,
                data=c.payload.data,
                encoding=_encoding(c.payload),
                options=convert.options(c.options),
            )
            for c in w.children.runs
        ]
    return spec


class HistoryServicer(hgrpc.HistoryServiceServicer):
    """The only writer of run state."""

    def __init__(self, store: RunStore, schedules: ScheduleStore, bus: Bus, claimer: Claimer) -> None:
        self.store = store
        self.claimer = claimer
        self.schedules = schedules
        self.bus = bus
        self.timers: TimerLoop | None = None

    async def announce_effects(self, effects: Effects, run: Any = None) -> None:
        """Publishes what a committed transition changed."""
        work = set(effects.work_keys)
        if run is not None and effects.work_ready:
            work.add((run["namespace"], run["task_id"]))
        keyed = run is not None and bool(run["concurrency_key"])
        if keyed and work:  # this replica's claims must look for keys again at once
            self.claimer.keyed_runs_seen(run["namespace"])
        for ns, task_id in work:
            notice = {"namespace": ns, "task_id": task_id}
            if keyed:  # matching serves keyed queues round-robin; tell it this one is
                notice["keyed"] = True
            await self.bus.publish(bus_mod.WORK, notice)
        if run is not None and effects.run_changed:
            await self.bus.publish(
                bus_mod.RUNS,
                {
                    "namespace": run["namespace"],
                    "run_id": str(run["id"]),
                    "task_id": run["task_id"],
                    "queue": run["queue"],
                    "status": run["status"],
                },
            )
        if effects.timer_due is not None:
            if self.timers is not None:
                self.timers.poke()
            await self.bus.publish(bus_mod.TIMERS, {"due_at": effects.timer_due.isoformat()})

    async def announce(self, outcome: Outcome) -> None:
        await self.announce_effects(outcome.effects, outcome.run)

    async def _full_run(self, namespace: str, run_id: uuid.UUID) -> cpb.Run:
        return convert.full_run(await self.store.get(namespace, run_id))

    # ---- runs --------------------------------------------------------------------

    @rpc
    async def TriggerRun(
        self, request: rpb.TriggerRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.TriggerRunResponse:
        return await self._triggered(*await self._trigger(request, None))

    @rpc
    async def TriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.TriggerRunsResponse:
        """Group commit of triggers from different callers; each answered as if alone."""
        ops = [functools.partial(self._trigger, r) for r in request.runs]
        response = hpb.TriggerRunsResponse()
        for result in await self.store.group_commit(ops):
            item = response.results.add()
            if isinstance(result, ServiceError):
                refuse(item.error, result)
                continue
            item.triggered.CopyFrom(await self._triggered(*result))
        return response

    async def _trigger(self, request: rpb.TriggerRunRequest, conn: Any) -> tuple[Outcome, bool]:
        return await self.store.trigger(new_run(request.namespace, request), conn=conn)

    async def _triggered(self, outcome: Outcome, existing: bool) -> rpb.TriggerRunResponse:
        """The answer to a trigger, after announcing a new run."""
        if not existing:
            await self.announce(outcome)
        return rpb.TriggerRunResponse(run=convert.run(outcome.run), existing=existing)

    @rpc
    async def BatchTriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.BatchTriggerRunsResponse:
        results = await self.store.trigger_batch([new_run(request.namespace, r) for r in request.runs])
        return rpb.BatchTriggerRunsResponse(runs=[await self._triggered(*r) for r in results])

    @rpc
    async def GetRun(
        self, request: rpb.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetRunResponse:
        return rpb.GetRunResponse(run=await self._full_run(request.namespace, parse_run_id(request.run_id)))

    @rpc
    async def ListRuns(
        self, request: rpb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListRunsResponse:
        size = request.page_size or 50
        after = decode_page_token(request.page_token) if request.page_token else None
        statuses = [RUN_STATUS_NAMES[s] for s in request.statuses]
        parent = parse_run_id(request.parent_run_id) if request.parent_run_id else None
        rows = await self.store.list_runs(
            request.namespace, request.task_id, statuses, request.tag, parent, size + 1, after
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token(rows[-1]["created_at"], rows[-1]["id"])
        return rpb.ListRunsResponse(runs=[convert.run(r) for r in rows], next_page_token=token)

    @rpc
    async def CancelRun(
        self, request: rpb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> rpb.CancelRunResponse:
        run_id = parse_run_id(request.run_id)
        await self._cancel_tree(request.namespace, run_id, request.reason)
        return rpb.CancelRunResponse(run=await self._full_run(request.namespace, run_id))

    async def _cancel_tree(self, namespace: str, run_id: uuid.UUID, reason: str) -> None:
        """Cancels a run, then its unfinished children, depth first."""
        outcome = await self.store.cancel(namespace, run_id, reason)
        await self.announce(outcome)
        for child in outcome.extra["children"]:
            try:
                await self._cancel_tree(namespace, child, f"parent run {run_id} was canceled")
            except ServiceError as exc:  # it finished meanwhile
                log.info("child %s of canceled run %s not canceled: %s", child, run_id, exc.message)

    # ---- attempts ----------------------------------------------------------------

    @rpc
    async def ClaimAttempts(
        self, request: hpb.ClaimAttemptsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.StartAttemptsResponse:
        """Claims up to max_attempts ready runs of the tasks under one token (its own
        statement and commit), then starts them as StartAttempts does; the claims
        are given back at once if the start raises."""
        ns = request.namespace
        limit = min(max(request.max_attempts, 1), MAX_POLL_ATTEMPTS)
        run_ids, token = await self.claimer.claim(ns, list(dict.fromkeys(request.task_ids)), limit)
        if not run_ids:
            return hpb.StartAttemptsResponse()
        starts = hpb.StartAttemptsRequest(
            starts=[
                hpb.StartAttemptRequest(
                    namespace=ns,
                    run_id=str(run_id),
                    worker_id=request.worker_id,
                    worker_version=request.worker_version,
                    claim_token=str(token),
                )
                for run_id in run_ids
            ]
        )
        try:
            return await self._start_attempts(starts)
        except BaseException:
            await asyncio.shield(self.claimer.release(run_ids, token))
            raise

    @rpc
    async def StartAttempts(
        self, request: hpb.StartAttemptsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.StartAttemptsResponse:
        """Starts claimed runs in one transaction; a stale claim gets an empty result."""
        return await self._start_attempts(request)

    async def _start_attempts(self, request: hpb.StartAttemptsRequest) -> hpb.StartAttemptsResponse:
        ops = [functools.partial(self._start_attempt, r) for r in request.starts]
        response = hpb.StartAttemptsResponse()
        for result in await self.store.group_commit(ops):
            item = response.results.add()
            if isinstance(result, ServiceError):  # not started: the claim expires
                log.warning("start of a claimed run refused: %s", result.message)
                continue
            if result is None:
                continue
            outcome, steps = result
            await self.announce(outcome)
            if steps is not None:  # None: rate-limited, its timer will announce it
                item.assignment.CopyFrom(self._assignment(outcome.run, steps))
        return response

    async def _start_attempt(
        self, request: hpb.StartAttemptRequest, conn: Any
    ) -> tuple[Outcome, list[Any] | None] | None:
        return await self.store.start_attempt(
            request.namespace,
            parse_run_id(request.run_id),
            uuid.UUID(request.claim_token),
            request.worker_id,
            request.worker_version,
            conn=conn,
        )

    def _assignment(self, run: Any, steps: list[Any]) -> wpb.AttemptAssignment:
        return wpb.AttemptAssignment(
            run_id=str(run["id"]),
            attempt=run["attempt_count"],
            task_id=run["task_id"],
            payload=convert.payload(run["input"], run["input_encoding"]),
            steps=[convert.step(s) for s in steps],
            lease_duration=convert.duration(self.store.lease_seconds),
            run_created_at=convert.timestamp(run["created_at"]),
            metadata=convert.struct(run["metadata"]),
            parent_run_id=str(run["parent_run_id"] or ""),
        )

    @rpc
    async def Heartbeat(
        self, request: wpb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> wpb.HeartbeatResponse:
        due = await self.store.heartbeat(request.namespace, parse_run_id(request.run_id), request.attempt)
        return wpb.HeartbeatResponse(lease_expires_at=convert.timestamp(due))

    async def _record_step(self, request: wpb.RecordStepRequest, conn: Any = None) -> wpb.RecordStepResponse:
        completed = request.status == cpb.STEP_STATUS_COMPLETED
        step = await self.store.record_step(
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            request.position,
            request.name,
            STEP_STATUS_NAMES[request.status],
            request.output.data if completed else None,
            _encoding(request.output) if completed else None,
            None if completed else convert.error_dict(request.error),
            request.tries or 1,
            conn=conn,
        )
        return wpb.RecordStepResponse(step=convert.step(step))

    async def _finish_attempt(
        self, request: wpb.FinishAttemptRequest, conn: Any = None
    ) -> tuple[wpb.FinishAttemptResponse, Outcome]:
        name = OUTCOMES[request.outcome]
        outcome = await self.store.finish_attempt(
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            name,
            request.output.data if name == "completed" else None,
            _encoding(request.output) if name == "completed" else None,
            convert.error_dict(request.error) if name == "failed" else None,
            wait_spec(request.namespace, request) if name == "suspended" else None,
            conn=conn,
        )
        response = wpb.FinishAttemptResponse(run_status=RUN_STATUS_BY_NAME[outcome.run["status"]])
        if "retry_delay" in outcome.extra:
            response.retry_delay.CopyFrom(convert.duration(outcome.extra["retry_delay"]))
        return response, outcome

    @rpc
    async def RecordStep(
        self, request: wpb.RecordStepRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RecordStepResponse:
        return await self._record_step(request)

    @rpc
    async def FinishAttempt(
        self, request: wpb.FinishAttemptRequest, context: grpc.aio.ServicerContext
    ) -> wpb.FinishAttemptResponse:
        response, outcome = await self._finish_attempt(request)
        await self.announce(outcome)
        return response

    @rpc
    async def BatchWrite(
        self, request: wpb.BatchWriteRequest, context: grpc.aio.ServicerContext
    ) -> wpb.BatchWriteResponse:
        """Group commit of the writes; each answered as if alone."""
        ops = []
        for w in request.writes:
            if w.WhichOneof("write") == "record_step":
                ops.append(functools.partial(self._record_step, w.record_step))
            else:
                ops.append(functools.partial(self._finish_attempt, w.finish_attempt))
        response = wpb.BatchWriteResponse()
        for result in await self.store.group_commit(ops):
            item = response.results.add()
            if isinstance(result, ServiceError):
                refuse(item.error, result)
            elif isinstance(result, tuple):
                item.finish_attempt.CopyFrom(result[0])
                await self.announce(result[1])
            else:
                item.record_step.CopyFrom(result)
        return response

    @rpc
    async def UpdateRunMetadata(
        self, request: wpb.UpdateRunMetadataRequest, context: grpc.aio.ServicerContext
    ) -> wpb.UpdateRunMetadataResponse:
        metadata = await self.store.update_metadata(
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            convert.struct_dict(request.metadata),
        )
        return wpb.UpdateRunMetadataResponse(metadata=convert.struct(metadata))

    # ---- events and tokens -------------------------------------------------------

    @rpc
    async def SendEvent(
        self, request: wspb.SendEventRequest, context: grpc.aio.ServicerContext
    ) -> wspb.SendEventResponse:
        data, encoding = request.payload.data, _encoding(request.payload)
        if request.run_id:
            outcome = await self.store.send_event_to_run(
                request.namespace, parse_run_id(request.run_id), request.name, request.key, data, encoding
            )
            if outcome is None:
                return wspb.SendEventResponse(buffered=True)
            await self.announce(outcome)
            return wspb.SendEventResponse(delivered_run_ids=[request.run_id])
        delivered = await self.store.send_event_by_name(
            request.namespace, request.name, request.key, data, encoding
        )
        for outcome in delivered:
            await self.announce(outcome)
        return wspb.SendEventResponse(delivered_run_ids=[str(o.run["id"]) for o in delivered])

    @rpc
    async def CreateWaitToken(
        self, request: wspb.CreateWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.CreateWaitTokenResponse:
        timeout = convert.seconds(request.timeout) if request.HasField("timeout") else None
        token = await self.store.create_token(
            request.namespace,
            parse_run_id(request.run_id) if request.run_id else None,
            timeout,
            request.idempotency_key or None,
        )
        return wspb.CreateWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    @rpc
    async def CompleteWaitToken(
        self, request: wspb.CompleteWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.CompleteWaitTokenResponse:
        token, effects = await self.store.complete_token(
            request.namespace, request.token_id, request.payload.data, _encoding(request.payload)
        )
        await self.announce_effects(effects)
        return wspb.CompleteWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    @rpc
    async def GetWaitToken(
        self, request: wspb.GetWaitTokenRequest, context: grpc.aio.ServicerContext
    ) -> wspb.GetWaitTokenResponse:
        token = await self.store.get_token(request.namespace, request.token_id)
        return wspb.GetWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    # ---- schedules ---------------------------------------------------------------

    async def _schedule_changed(self, row: Any) -> spb.Schedule:
        await self.announce_effects(Effects(timer_due=row["next_fire_at"]))
        return convert.schedule(row)

    @rpc
    async def CreateSchedule(
        self, request: spb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.CreateScheduleResponse:
        row = await self.schedules.create(
            request.namespace,
            request.schedule_id,
            request.task_id,
            request.cron,
            request.timezone,
            request.payload.data,
            _encoding(request.payload),
            request.deduplication_key,
        )
        return spb.CreateScheduleResponse(schedule=await self._schedule_changed(row))

    @rpc
    async def ListSchedules(
        self, request: spb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListSchedulesResponse:
        rows = await self.schedules.list(request.namespace, request.task_id)
        return spb.ListSchedulesResponse(schedules=[convert.schedule(r) for r in rows])

    @rpc
    async def PauseSchedule(
        self, request: spb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.PauseScheduleResponse:
        row = await self.schedules.set_paused(request.namespace, request.schedule_id, True)
        return spb.PauseScheduleResponse(schedule=convert.schedule(row))

    @rpc
    async def ResumeSchedule(
        self, request: spb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.ResumeScheduleResponse:
        row = await self.schedules.set_paused(request.namespace, request.schedule_id, False)
        return spb.ResumeScheduleResponse(schedule=await self._schedule_changed(row))

    @rpc
    async def DeleteSchedule(
        self, request: spb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
    ) -> spb.DeleteScheduleResponse:
        await self.schedules.delete(request.namespace, request.schedule_id)
        return spb.DeleteScheduleResponse()

    @rpc
    async def SyncDeclaredSchedules(
        self, request: hpb.SyncDeclaredSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> hpb.SyncDeclaredSchedulesResponse:
        await self.schedules.sync_declared(
            request.namespace, [(t.task_id, t.schedule, t.timezone) for t in request.tasks]
        )
        await self.announce_effects(Effects(timer_due=datetime.now(UTC)))
        return hpb.SyncDeclaredSchedulesResponse()
