"""History's gRPC API: proto in, the operation (services/history/api/), proto
out, and the committed changes announced (notify.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc

from cairn import status_codes
from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.limits import DEFAULT_LOG_PAGE_SIZE, MAX_POLL_ATTEMPTS
from cairn.statuses import (
    ATTEMPT_OUTCOME_NAMES,
    RUN_STATUS_BY_NAME,
    RUN_STATUS_NAMES,
    STEP_STATUS_NAMES,
    TERMINAL_RUN_STATUSES,
)
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.common import metrics
from services.common.errors import ServiceError, attempt_gone_of, rpc
from services.history import convert, requests
from services.history.api import cancel, deliver, finish, output, reads, replay, start, step, trigger, watch
from services.history.api.claim import Claimer
from services.history.api.start import Started
from services.history.api.transition import Conn, Effects, Outcome, Row, parse_run_id
from services.history.group_commit import group_commit
from services.history.notify import Announcer
from services.history.schedules import ScheduleStore

log = logging.getLogger("cairn.history")
Context = grpc.aio.ServicerContext[Any, Any]


def refuse(error: wpb.WriteError, exc: ServiceError) -> None:
    """One write's refusal in a batch answer, as its single call would have failed."""
    error.code = status_codes.to_int(exc.code)
    error.message = exc.message
    error.attempt_gone = attempt_gone_of(exc.trailing_metadata)


class HistoryServicer(hgrpc.HistoryServiceServicer):
    """The only writer of run state."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        lease_seconds: float,
        schedules: ScheduleStore,
        announcer: Announcer,
        claimer: Claimer,
    ) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.schedules = schedules
        self.announcer = announcer
        self.claimer = claimer

    async def _full_run(self, namespace: str, run_id: uuid.UUID) -> cpb.Run:
        return convert.full_run(await reads.get(self.pool, namespace, run_id))

    # ---- runs --------------------------------------------------------------------

    @rpc
    async def TriggerRun(self, request: rpb.TriggerRunRequest, context: Context) -> rpb.TriggerRunResponse:
        async with self.pool.acquire() as conn:
            triggered = await self._trigger(request, conn)
        return await self._triggered(*triggered)

    @rpc
    async def TriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, context: Context
    ) -> hpb.TriggerRunsResponse:
        """Group commit of triggers from different callers; each answered as if alone."""
        ops = [functools.partial(self._trigger, r) for r in request.runs]
        response = hpb.TriggerRunsResponse()
        for result in await group_commit(self.pool, ops, "trigger"):
            item = response.results.add()
            if isinstance(result, ServiceError):
                refuse(item.error, result)
                continue
            item.triggered.CopyFrom(await self._triggered(*result))
        return response

    async def _trigger(self, request: rpb.TriggerRunRequest, conn: Conn) -> tuple[Outcome, bool]:
        return await trigger.trigger(conn, requests.new_run(request.namespace, request))

    async def _triggered(self, outcome: Outcome, existing: bool) -> rpb.TriggerRunResponse:
        """The answer to a trigger, after announcing a new run. A new run's input
        is not echoed back (the caller sent it); a run found by its idempotency
        key carries its own input, which may differ from what was sent."""
        if not existing:
            await self.announcer.outcome(outcome)
        return rpb.TriggerRunResponse(run=convert.run(outcome.run, with_input=existing), existing=existing)

    @rpc
    async def BatchTriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, context: Context
    ) -> rpb.BatchTriggerRunsResponse:
        new = [requests.new_run(request.namespace, r) for r in request.runs]
        results = await trigger.trigger_batch(self.pool, new)
        return rpb.BatchTriggerRunsResponse(runs=[await self._triggered(*r) for r in results])

    @rpc
    async def GetRun(self, request: rpb.GetRunRequest, context: Context) -> rpb.GetRunResponse:
        return rpb.GetRunResponse(run=await self._full_run(request.namespace, parse_run_id(request.run_id)))

    @rpc
    async def ListRuns(self, request: rpb.ListRunsRequest, context: Context) -> rpb.ListRunsResponse:
        size = request.page_size or 50
        after = requests.decode_page_token(request.page_token) if request.page_token else None
        statuses = [RUN_STATUS_NAMES[s] for s in request.statuses]
        parent = parse_run_id(request.parent_run_id) if request.parent_run_id else None
        since, until = (
            getattr(request, f).ToDatetime(tzinfo=UTC) if request.HasField(f) else None
            for f in ("created_after", "created_before")
        )
        rows = await reads.list_runs(
            self.pool,
            request.namespace,
            request.task_id,
            statuses,
            request.tag,
            parent,
            size + 1,
            after,
            queue=request.queue,
            created_after=since,
            created_before=until,
        )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = requests.encode_page_token(rows[-1]["created_at"], rows[-1]["id"])
        return rpb.ListRunsResponse(runs=[convert.run(r) for r in rows], next_page_token=token)

    @rpc
    async def ReplayRun(self, request: rpb.ReplayRunRequest, context: Context) -> rpb.ReplayRunResponse:
        """A new run of the run's task, payload and options, linked by replay_of."""
        outcome = await replay.replay(self.pool, request.namespace, parse_run_id(request.run_id))
        await self.announcer.outcome(outcome)
        return rpb.ReplayRunResponse(run=convert.run(outcome.run))

    @rpc
    async def CancelRun(self, request: rpb.CancelRunRequest, context: Context) -> rpb.CancelRunResponse:
        run_id = parse_run_id(request.run_id)
        await self._cancel_tree(request.namespace, run_id, request.reason)
        return rpb.CancelRunResponse(run=await self._full_run(request.namespace, run_id))

    async def _cancel_tree(self, namespace: str, run_id: uuid.UUID, reason: str) -> None:
        """Cancels a run, then its unfinished children, depth first."""
        outcome = await cancel.cancel(self.pool, namespace, run_id, reason)
        await self.announcer.outcome(outcome)
        for child in outcome.extra["children"]:
            try:
                await self._cancel_tree(namespace, child, f"parent run {run_id} was canceled")
            except ServiceError as exc:  # it finished meanwhile
                log.info("child %s of canceled run %s not canceled: %s", child, run_id, exc.message)

    # ---- attempts ----------------------------------------------------------------

    @rpc
    async def ClaimAttempts(
        self, request: hpb.ClaimAttemptsRequest, context: Context
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
        self, request: hpb.StartAttemptsRequest, context: Context
    ) -> hpb.StartAttemptsResponse:
        """Starts claimed runs in one transaction; a stale claim gets an empty result."""
        return await self._start_attempts(request)

    async def _start_attempts(self, request: hpb.StartAttemptsRequest) -> hpb.StartAttemptsResponse:
        ops = [functools.partial(self._start_attempt, r) for r in request.starts]
        response = hpb.StartAttemptsResponse()
        for result in await group_commit(self.pool, ops, "start"):
            item = response.results.add()
            if isinstance(result, ServiceError):  # not started: the claim expires
                log.warning("start of a claimed run refused: %s", result.message)
                continue
            if result is None:
                continue
            outcome, steps = result
            await self.announcer.outcome(outcome)
            if steps is not None:  # None: rate-limited, its timer will announce it
                item.assignment.CopyFrom(self._assignment(outcome.run, steps))
        return response

    async def _start_attempt(self, request: hpb.StartAttemptRequest, conn: Conn) -> Started | None:
        return await start.start_attempt(
            conn,
            self.lease_seconds,
            request.namespace,
            parse_run_id(request.run_id),
            uuid.UUID(request.claim_token),
            request.worker_id,
            request.worker_version,
        )

    def _assignment(self, run: Row, steps: list[Row]) -> wpb.AttemptAssignment:
        return wpb.AttemptAssignment(
            run_id=str(run["id"]),
            attempt=run["attempt_count"],
            task_id=run["task_id"],
            payload=convert.payload(run["input"], run["input_encoding"]),
            steps=[convert.step(s) for s in steps],
            lease_duration=convert.duration(self.lease_seconds),
            run_created_at=convert.timestamp(run["created_at"]),
            metadata=convert.struct(run["metadata"]),
            parent_run_id=str(run["parent_run_id"] or ""),
            traceparent=run["traceparent"],
            attempt_token=run["attempt_token"],
        )

    @rpc
    async def Heartbeat(self, request: wpb.HeartbeatRequest, context: Context) -> wpb.HeartbeatResponse:
        due = await step.heartbeat(
            self.pool,
            self.lease_seconds,
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            request.attempt_token,
        )
        return wpb.HeartbeatResponse(lease_expires_at=convert.timestamp(due))

    async def _record_step(self, request: wpb.RecordStepRequest, conn: Conn) -> wpb.RecordStepResponse:
        requests.check_step(request)
        completed = request.status == cpb.STEP_STATUS_COMPLETED
        row = await step.record_step(
            conn,
            self.lease_seconds,
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            request.position,
            request.name,
            STEP_STATUS_NAMES[request.status],
            request.output.data if completed else None,
            requests.encoding(request.output) if completed else None,
            None if completed else convert.error_dict(request.error),
            request.tries,
            [convert.error_dict(e) for e in request.try_errors] or None,  # None: '[]' in SQL, no encoding
            request.attempt_token,
        )
        return wpb.RecordStepResponse(step=convert.step(row))

    async def _finish_attempt(
        self, request: wpb.FinishAttemptRequest, conn: Conn
    ) -> tuple[wpb.FinishAttemptResponse, Outcome]:
        name = ATTEMPT_OUTCOME_NAMES[request.outcome]
        outcome = await finish.finish_attempt(
            conn,
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            name,
            request.output.data if name == "completed" else None,
            requests.encoding(request.output) if name == "completed" else None,
            convert.error_dict(request.error) if name == "failed" else None,
            requests.wait_spec(request.namespace, request) if name == "suspended" else None,
            request.attempt_token,
        )
        response = wpb.FinishAttemptResponse(run_status=RUN_STATUS_BY_NAME[outcome.run["status"]])
        if "retry_delay" in outcome.extra:
            response.retry_delay.CopyFrom(convert.duration(outcome.extra["retry_delay"]))
        return response, outcome

    @rpc
    async def RecordStep(self, request: wpb.RecordStepRequest, context: Context) -> wpb.RecordStepResponse:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            response = await self._record_step(request, conn)
        metrics.STEP_RECORD_SECONDS.observe(time.perf_counter() - started)
        await self.announcer.logged(request.namespace, request.run_id)
        return response

    @rpc
    async def FinishAttempt(
        self, request: wpb.FinishAttemptRequest, context: Context
    ) -> wpb.FinishAttemptResponse:
        async with self.pool.acquire() as conn:
            response, outcome = await self._finish_attempt(request, conn)
        await self.announcer.outcome(outcome)
        return response

    @rpc
    async def BatchWrite(self, request: wpb.BatchWriteRequest, context: Context) -> wpb.BatchWriteResponse:
        """Group commit of the writes; each answered as if alone."""
        started = time.perf_counter()
        ops: list[Any] = []
        for w in request.writes:
            kind = w.WhichOneof("write")
            if kind == "record_step":
                ops.append(functools.partial(self._record_step, w.record_step))
            elif kind == "append_run_output":
                ops.append(functools.partial(self._append_output, w.append_run_output))
            else:
                ops.append(functools.partial(self._finish_attempt, w.finish_attempt))
        response = wpb.BatchWriteResponse()
        results = await group_commit(self.pool, ops, "write")
        committed = time.perf_counter() - started
        for result in results:
            item = response.results.add()
            if isinstance(result, ServiceError):
                refuse(item.error, result)
            elif isinstance(result, tuple):
                item.finish_attempt.CopyFrom(result[0])
                await self.announcer.outcome(result[1])
            elif isinstance(result, wpb.AppendRunOutputResponse):
                item.append_run_output.CopyFrom(result)
            else:
                item.record_step.CopyFrom(result)
                metrics.STEP_RECORD_SECONDS.observe(committed)
        logged: set[tuple[str, str]] = set()
        for w, item in zip(request.writes, response.results, strict=True):
            if item.WhichOneof("result") in ("record_step", "append_run_output"):
                write = getattr(w, w.WhichOneof("write") or "")
                logged.add((write.namespace, write.run_id))
        for namespace, run_id in logged:  # once per run of the batch
            await self.announcer.logged(namespace, run_id)
        return response

    async def _append_output(
        self, request: wpb.AppendRunOutputRequest, conn: Conn
    ) -> wpb.AppendRunOutputResponse:
        kept = await output.append(
            conn,
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            request.attempt_token,
            requests.outputs(request),
        )
        return wpb.AppendRunOutputResponse(logs_dropped=kept.logs_dropped, chunks_dropped=kept.chunks_dropped)

    @rpc
    async def AppendRunOutput(
        self, request: wpb.AppendRunOutputRequest, context: Context
    ) -> wpb.AppendRunOutputResponse:
        async with self.pool.acquire() as conn:
            response = await self._append_output(request, conn)
        await self.announcer.logged(request.namespace, request.run_id)
        return response

    @rpc
    async def ListRunLogs(self, request: rpb.ListRunLogsRequest, context: Context) -> rpb.ListRunLogsResponse:
        limit = request.page_size or DEFAULT_LOG_PAGE_SIZE
        rows, more = await output.log_lines(
            self.pool, request.namespace, parse_run_id(request.run_id), request.after_id, limit
        )
        return rpb.ListRunLogsResponse(
            lines=[convert.log_line(r) for r in rows],
            last_id=rows[-1]["id"] if rows else request.after_id,
            more=more,
        )

    @rpc
    async def UpdateRunMetadata(
        self, request: wpb.UpdateRunMetadataRequest, context: Context
    ) -> wpb.UpdateRunMetadataResponse:
        metadata = await step.update_metadata(
            self.pool,
            request.namespace,
            parse_run_id(request.run_id),
            request.attempt,
            request.attempt_token,
            convert.struct_dict(request.metadata),
        )
        await self.announcer.logged(request.namespace, request.run_id)
        return wpb.UpdateRunMetadataResponse(metadata=convert.struct(metadata))

    @rpc
    async def ListRunEvents(
        self, request: hpb.ListRunEventsRequest, context: Context
    ) -> hpb.ListRunEventsResponse:
        limit = max(1, request.limit)
        if request.run_id:
            found = await watch.of_run(
                self.pool, request.namespace, parse_run_id(request.run_id), request.after_id, limit
            )
        else:
            found = await watch.of_namespace(
                self.pool, request.namespace, request.task_id, list(request.tags), request.after_id, limit
            )
        response = hpb.ListRunEventsResponse(last_id=found.last_id, more=found.more)
        if request.run_id:
            response.ended = next(iter(found.runs.values()))["status"] in TERMINAL_RUN_STATUSES
        runs: dict[Any, cpb.Run] = {}  # each run converted once per page
        for e in found.events:
            run = found.runs.get(e["run_id"])
            if run is None:  # deleted by retention since
                continue
            if e["run_id"] not in runs:
                runs[e["run_id"]] = convert.run(run, with_input=False)
            response.updates.add(
                event=convert.event(e), run=runs[e["run_id"]], done=e["type"] in TERMINAL_RUN_STATUSES
            )
        return response

    # ---- events and tokens -------------------------------------------------------

    @rpc
    async def SendEvent(self, request: wspb.SendEventRequest, context: Context) -> wspb.SendEventResponse:
        data, encoding = request.payload.data, requests.encoding(request.payload)
        if request.run_id:
            outcome = await deliver.send_event_to_run(
                self.pool,
                request.namespace,
                parse_run_id(request.run_id),
                request.name,
                request.key,
                data,
                encoding,
            )
            if outcome is None:
                return wspb.SendEventResponse(buffered=True)
            await self.announcer.outcome(outcome)
            return wspb.SendEventResponse(delivered_run_ids=[request.run_id])
        delivered = await deliver.send_event_by_name(
            self.pool, request.namespace, request.name, request.key, data, encoding
        )
        for outcome in delivered:
            await self.announcer.outcome(outcome)
        return wspb.SendEventResponse(delivered_run_ids=[str(o.run["id"]) for o in delivered])

    @rpc
    async def CreateWaitToken(
        self, request: wspb.CreateWaitTokenRequest, context: Context
    ) -> wspb.CreateWaitTokenResponse:
        timeout = convert.seconds(request.timeout) if request.HasField("timeout") else None
        token = await deliver.create_token(
            self.pool,
            request.namespace,
            parse_run_id(request.run_id) if request.run_id else None,
            timeout,
            request.idempotency_key or None,
        )
        return wspb.CreateWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    @rpc
    async def CompleteWaitToken(
        self, request: wspb.CompleteWaitTokenRequest, context: Context
    ) -> wspb.CompleteWaitTokenResponse:
        token, effects = await deliver.complete_token(
            self.pool,
            request.namespace,
            request.token_id,
            request.payload.data,
            requests.encoding(request.payload),
        )
        await self.announcer.effects(effects)
        return wspb.CompleteWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    @rpc
    async def GetWaitToken(
        self, request: wspb.GetWaitTokenRequest, context: Context
    ) -> wspb.GetWaitTokenResponse:
        token = await deliver.get_token(self.pool, request.namespace, request.token_id)
        return wspb.GetWaitTokenResponse(token=convert.token(token, datetime.now(UTC)))

    # ---- schedules ---------------------------------------------------------------

    async def _schedule_changed(self, row: Row) -> spb.Schedule:
        await self.announcer.effects(Effects(timer_due=row["next_fire_at"]))
        return convert.schedule(row)

    @rpc
    async def CreateSchedule(
        self, request: spb.CreateScheduleRequest, context: Context
    ) -> spb.CreateScheduleResponse:
        row = await self.schedules.create(
            request.namespace,
            request.schedule_id,
            request.task_id,
            request.cron,
            request.timezone,
            request.payload.data,
            requests.encoding(request.payload),
            request.deduplication_key,
        )
        return spb.CreateScheduleResponse(schedule=await self._schedule_changed(row))

    @rpc
    async def ListSchedules(
        self, request: spb.ListSchedulesRequest, context: Context
    ) -> spb.ListSchedulesResponse:
        rows = await self.schedules.list(request.namespace, request.task_id)
        return spb.ListSchedulesResponse(schedules=[convert.schedule(r) for r in rows])

    @rpc
    async def PauseSchedule(
        self, request: spb.PauseScheduleRequest, context: Context
    ) -> spb.PauseScheduleResponse:
        row = await self.schedules.set_paused(request.namespace, request.schedule_id, True)
        return spb.PauseScheduleResponse(schedule=convert.schedule(row))

    @rpc
    async def ResumeSchedule(
        self, request: spb.ResumeScheduleRequest, context: Context
    ) -> spb.ResumeScheduleResponse:
        row = await self.schedules.set_paused(request.namespace, request.schedule_id, False)
        return spb.ResumeScheduleResponse(schedule=await self._schedule_changed(row))

    @rpc
    async def DeleteSchedule(
        self, request: spb.DeleteScheduleRequest, context: Context
    ) -> spb.DeleteScheduleResponse:
        await self.schedules.delete(request.namespace, request.schedule_id)
        return spb.DeleteScheduleResponse()

    @rpc
    async def SyncDeclaredSchedules(
        self, request: hpb.SyncDeclaredSchedulesRequest, context: Context
    ) -> hpb.SyncDeclaredSchedulesResponse:
        await self.schedules.sync_declared(
            request.namespace, [(t.task_id, t.schedule, t.timezone) for t in request.tasks]
        )
        await self.announcer.effects(Effects(timer_due=datetime.now(UTC)))
        return hpb.SyncDeclaredSchedulesResponse()
