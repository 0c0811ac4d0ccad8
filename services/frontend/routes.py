"""The routing table: every method of the public API, the check its request
must pass, and where it goes. A route with a backend is forwarded there
unchanged (the frontend adds nothing but the interceptors); a route without one
is served by an explicit handler (handlers.py) because it does more than
forward. Interceptors (interceptors.py) default the namespace, validate and map
errors for every route alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from cairn.keys import ROLES
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.frontend import keys_api
from services.frontend import validation as check
from services.frontend.backend import HISTORY, MATCHING

Validator = Callable[[Any], None]

RUNS = rpb.DESCRIPTOR.services_by_name["RunService"]
WORKERS = wpb.DESCRIPTOR.services_by_name["WorkerService"]
WAITS = wspb.DESCRIPTOR.services_by_name["WaitService"]
SCHEDULES = spb.DESCRIPTOR.services_by_name["ScheduleService"]
QUEUES = qpb.DESCRIPTOR.services_by_name["QueueService"]
KEYS = kpb.DESCRIPTOR.services_by_name["KeyService"]
SERVICES: list[ServiceDescriptor] = [RUNS, WORKERS, WAITS, SCHEDULES, QUEUES, KEYS]

# Who may call a route (the roles of key_service.proto's KeyRole); admin may call every one.
CLIENT = frozenset({"client", "admin"})
WORKER = frozenset({"worker", "admin"})
ADMIN = frozenset({"admin"})
ANY = frozenset(ROLES)  # a worker only from inside an attempt (auth.authorize)


def path(service: ServiceDescriptor, method: str) -> str:
    """The gRPC path of a method: /cairn.v1.RunService/GetRun."""
    return f"/{service.full_name}/{method}"


@dataclass(frozen=True)
class Route:
    """One public method."""

    service: ServiceDescriptor
    method: str
    roles: frozenset[str]  # the key roles that may call it
    validate: Validator  # the request's fields, after its namespace
    backend: str | None = None  # HISTORY or MATCHING: forwarded; None: an explicit handler
    precheck: Validator | None = None  # checks that come before the namespace's

    @property
    def path(self) -> str:
        return path(self.service, self.method)


ROUTES: dict[str, Route] = {
    r.path: r
    for r in [
        Route(RUNS, "TriggerRun", ANY, check.trigger),  # coalesced (triggers.py)
        Route(RUNS, "BatchTriggerRuns", CLIENT, check.batch_trigger, HISTORY),
        Route(RUNS, "GetRun", CLIENT, check.get_run, HISTORY),
        Route(RUNS, "ListRuns", CLIENT, check.list_runs, HISTORY),
        Route(RUNS, "CancelRun", CLIENT, check.cancel_run, HISTORY),
        Route(RUNS, "WaitRun", CLIENT, check.wait_run),  # long-polls the run (run_watch.py)
        Route(RUNS, "ReplayRun", CLIENT, check.get_run, HISTORY),
        Route(RUNS, "WatchRun", CLIENT, check.watch_run),  # streams the run's event log (handlers.py)
        Route(RUNS, "WatchRuns", CLIENT, check.watch_runs),  # streams a namespace's events (handlers.py)
        Route(RUNS, "ListRunLogs", CLIENT, check.list_run_logs, HISTORY),
        Route(WORKERS, "RegisterWorker", WORKER, check.register),  # matching, then history's schedules
        Route(WORKERS, "PollAttempt", WORKER, check.poll, precheck=check.poll_wait),  # timeout from its wait
        Route(WORKERS, "Heartbeat", WORKER, check.attempt_ref, HISTORY),
        Route(WORKERS, "RecordStep", WORKER, check.record_step, HISTORY),
        Route(WORKERS, "FinishAttempt", WORKER, check.finish, HISTORY),
        Route(WORKERS, "UpdateRunMetadata", WORKER, check.update_metadata, HISTORY),
        Route(WORKERS, "BatchWrite", WORKER, check.batch_write),
        Route(WORKERS, "AppendRunOutput", WORKER, check.append_run_output, HISTORY),
        Route(WAITS, "SendEvent", CLIENT, check.send_event, HISTORY),
        Route(WAITS, "CreateWaitToken", ANY, check.create_token, HISTORY),
        Route(WAITS, "CompleteWaitToken", CLIENT, check.complete_token, HISTORY),
        Route(WAITS, "GetWaitToken", CLIENT, check.token_ref, HISTORY),
        Route(SCHEDULES, "CreateSchedule", ADMIN, check.create_schedule, HISTORY),
        Route(SCHEDULES, "ListSchedules", CLIENT, check.list_schedules, HISTORY),
        Route(SCHEDULES, "PauseSchedule", ADMIN, check.schedule_ref, HISTORY),
        Route(SCHEDULES, "ResumeSchedule", ADMIN, check.schedule_ref, HISTORY),
        Route(SCHEDULES, "DeleteSchedule", ADMIN, check.schedule_ref, HISTORY),
        Route(QUEUES, "UpdateQueue", ADMIN, check.update_queue, MATCHING),
        Route(QUEUES, "ListQueues", CLIENT, check.nothing, MATCHING),
        Route(QUEUES, "PauseQueue", ADMIN, check.queue_ref, MATCHING),
        Route(QUEUES, "ResumeQueue", ADMIN, check.queue_ref, MATCHING),
        Route(QUEUES, "ListWorkers", CLIENT, check.nothing, MATCHING),
        Route(KEYS, "CreateKey", ADMIN, keys_api.create_key, MATCHING),
        Route(KEYS, "ListKeys", ADMIN, check.nothing),  # with the keys for every namespace (keys_api.py)
        Route(KEYS, "RevokeKey", ADMIN, keys_api.key_ref),  # or the key for every namespace (keys_api.py)
    ]
}
