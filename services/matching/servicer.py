"""Matching's gRPC API: worker registration, queue settings, and the long-poll
for attempts. A poll asks history to claim and start ready runs (history owns
the ready set); with none, it waits on the keys it serves until woken."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2 as mpb
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.limits import DEFAULT_POLL_WAIT, MAX_POLL_ATTEMPTS, MAX_WAIT, WORKER_SEEN_REFRESH
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import worker_service_pb2 as wpb
from services.common import bus as bus_mod
from services.common.bus import Bus
from services.common.errors import invalid, precondition, rpc, unavailable
from services.matching import queues
from services.matching.keys import KeyStore
from services.matching.limited import LimitedQueues
from services.matching.queues import QueueStore
from services.matching.registry import Registry, caller_key, check_owner, worker_info
from services.matching.waiters import Waiters

START_TIMEOUT = 10.0
WORKER_CACHE_SECONDS = WORKER_SEEN_REFRESH
Context = grpc.aio.ServicerContext[object, object]


class MatchingServicer(mgrpc.MatchingServiceServicer):
    """Hands each queued run to exactly one polling worker at a time."""

    def __init__(
        self,
        registry: Registry,
        limited: LimitedQueues,
        waiters: Waiters,
        history: hgrpc.HistoryServiceStub,
        history_address: str,
        queue_store: QueueStore,
        bus: Bus,
        key_store: KeyStore,
    ) -> None:
        self.keys = key_store
        self.queues = queue_store
        self.bus = bus
        self._workers: dict[tuple[str, str], tuple[float, asyncpg.Record]] = {}
        self.registry = registry
        self.limited = limited
        self.waiters = waiters
        self.history = history
        self.history_address = history_address

    @rpc
    async def RegisterWorker(
        self, request: wpb.RegisterWorkerRequest, context: Context
    ) -> wpb.RegisterWorkerResponse:
        await self.registry.register(request, caller_key(context))
        self._workers.pop((request.namespace, request.worker_id), None)
        await self.limited.refresh()
        for task in request.tasks:
            self.waiters.wake((request.namespace, task.task_id))
        return wpb.RegisterWorkerResponse()

    @rpc
    async def PollAttempt(self, request: wpb.PollAttemptRequest, context: Context) -> wpb.PollAttemptResponse:
        ns = request.namespace
        worker = await self._worker(ns, request.worker_id)
        if worker is None:
            raise precondition(
                f"worker {request.worker_id!r} is not registered in namespace {ns!r}; "
                "call RegisterWorker first"
            )
        check_owner(worker, request.worker_id, caller_key(context))
        task_ids = list(dict.fromkeys(request.task_ids or worker["task_ids"]))  # each once
        unknown = sorted(set(task_ids) - set(worker["task_ids"]))
        if unknown:
            raise invalid(f"task_ids: {', '.join(unknown)} not registered by worker {request.worker_id!r}")
        wait = request.wait.ToTimedelta().total_seconds() if request.HasField("wait") else DEFAULT_POLL_WAIT
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        keys = [(ns, t) for t in task_ids]
        claim = hpb.ClaimAttemptsRequest(
            namespace=ns,
            task_ids=task_ids,
            max_attempts=min(max(request.max_attempts, 1), MAX_POLL_ATTEMPTS),
            worker_id=request.worker_id,
            worker_version=worker["version"],
        )
        while True:
            event = self.waiters.add(keys)
            try:
                started = await self._claim(claim)
                if not started.results:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.waiters.draining:
                        return wpb.PollAttemptResponse()
                    try:
                        await asyncio.wait_for(event.wait(), remaining)
                    except TimeoutError:
                        return wpb.PollAttemptResponse()
                    if self.waiters.draining:  # shutting down: the worker polls again elsewhere
                        return wpb.PollAttemptResponse()
                    continue
            finally:
                self.waiters.remove(keys, event)
            assignments = [r.assignment for r in started.results if r.HasField("assignment")]
            if assignments:  # none: every claim was stale, claim again at once
                for key in keys:  # more may be ready: hand the baton to the next poller
                    self.waiters.wake(key)
                return wpb.PollAttemptResponse(assignments=assignments)

    async def _claim(self, request: hpb.ClaimAttemptsRequest) -> hpb.StartAttemptsResponse:
        """History's claim and start of ready runs, sent once history can be
        reached (wait_for_ready: a history restarting is waited for, within
        START_TIMEOUT); an unreachable history is UNAVAILABLE naming it."""
        try:
            response: hpb.StartAttemptsResponse = await self.history.ClaimAttempts(
                request, timeout=START_TIMEOUT, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,  # history shutting down
            ):
                raise unavailable(
                    f"history service at {self.history_address} is unavailable: {exc.details()}"
                ) from None
            raise
        return response

    async def _worker(self, ns: str, worker_id: str) -> asyncpg.Record | None:
        """The worker's registration, cached briefly: every poll needs it. Each
        read marks it seen (last_seen_at), so that write is as rare as the read."""
        cached = self._workers.get((ns, worker_id))
        now = time.monotonic()
        if cached is not None and now - cached[0] < WORKER_CACHE_SECONDS:
            return cached[1]
        worker = await self.registry.worker(ns, worker_id)
        if worker is not None:
            self._workers[(ns, worker_id)] = (now, worker)
        return worker

    async def _queue_changed(self, namespace: str, name: str) -> None:
        """Wakes the pollers of a queue's tasks, here and in the other replicas."""
        await self.limited.refresh()
        for task_id in await self.queues.task_ids(namespace, name):
            self.waiters.wake_all((namespace, task_id))
            await self.bus.publish(bus_mod.WORK, {"namespace": namespace, "task_id": task_id})

    @rpc
    async def UpdateQueue(self, request: qpb.UpdateQueueRequest, context: Context) -> qpb.UpdateQueueResponse:
        row = await self.queues.update(request)
        await self._queue_changed(request.namespace, request.name)
        return qpb.UpdateQueueResponse(queue=queues.to_proto(row))

    @rpc
    async def ListQueues(self, request: qpb.ListQueuesRequest, context: Context) -> qpb.ListQueuesResponse:
        return qpb.ListQueuesResponse(
            queues=[queues.to_proto(r) for r in await self.queues.in_namespace(request.namespace)]
        )

    @rpc
    async def PauseQueue(self, request: qpb.PauseQueueRequest, context: Context) -> qpb.PauseQueueResponse:
        row = await self.queues.set_paused(request.namespace, request.name, True)
        return qpb.PauseQueueResponse(queue=queues.to_proto(row))

    @rpc
    async def ResumeQueue(self, request: qpb.ResumeQueueRequest, context: Context) -> qpb.ResumeQueueResponse:
        row = await self.queues.set_paused(request.namespace, request.name, False)
        await self._queue_changed(request.namespace, request.name)
        return qpb.ResumeQueueResponse(queue=queues.to_proto(row))

    @rpc
    async def ListWorkers(self, request: qpb.ListWorkersRequest, context: Context) -> qpb.ListWorkersResponse:
        """The namespace's workers, most recently seen first."""
        rows = await self.registry.workers(request.namespace)
        return qpb.ListWorkersResponse(workers=[worker_info(r, running) for r, running in rows])

    @rpc
    async def CreateKey(self, request: kpb.CreateKeyRequest, context: Context) -> kpb.CreateKeyResponse:
        return await self.keys.create(request)

    @rpc
    async def ListKeys(self, request: kpb.ListKeysRequest, context: Context) -> kpb.ListKeysResponse:
        return kpb.ListKeysResponse(keys=await self.keys.list(request.namespace))

    @rpc
    async def RevokeKey(self, request: kpb.RevokeKeyRequest, context: Context) -> kpb.RevokeKeyResponse:
        key = await self.keys.revoke(request.namespace, request.id)
        await self.bus.publish(bus_mod.KEYS, {"id": key.id})
        return kpb.RevokeKeyResponse(key=key)

    @rpc
    async def AuthenticateKey(
        self, request: mpb.AuthenticateKeyRequest, context: Context
    ) -> mpb.AuthenticateKeyResponse:
        return mpb.AuthenticateKeyResponse(key=await self.keys.authenticate(request.secret))
