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

from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from services.frontend import validation as check
from services.frontend.backend import HISTORY, MATCHING

Validator = Callable[[Any], None]

RUNS = rpb.DESCRIPTOR.services_by_name["RunService"]
WORKERS = wpb.DESCRIPTOR.services_by_name["WorkerService"]
WAITS = wspb.DESCRIPTOR.services_by_name["WaitService"]
SCHEDULES = spb.DESCRIPTOR.services_by_name["ScheduleService"]
QUEUES = qpb.DESCRIPTOR.services_by_name["QueueService"]
SERVICES: list[ServiceDescriptor] = [RUNS, WORKERS, WAITS, SCHEDULES, QUEUES]


def path(service: ServiceDescriptor, method: str) -> str:
    """The gRPC path of a method: /cairn.v1.RunService/GetRun."""
    return f"/{service.full_name}/{method}"


@dataclass(frozen=True)
class Route:
    """One public method."""

    service: ServiceDescriptor
    method: str
    validate: Validator  # the request's fields, after its namespace
    backend: str | None = None  # HISTORY or MATCHING: forwarded; None: an explicit handler
    precheck: Validator | None = None  # checks that come before the namespace's

    @property
    def path(self) -> str:
        return path(self.service, self.method)


ROUTES: dict[str, Route] = {
    r.path: r
    for r in [
        Route(RUNS, "TriggerRun", check.trigger),  # coalesced (triggers.py)
        Route(RUNS, "BatchTriggerRuns", check.batch_trigger, HISTORY),
        Route(RUNS, "GetRun", check.get_run, HISTORY),
        Route(RUNS, "ListRuns", check.list_runs, HISTORY),
        Route(RUNS, "CancelRun", check.cancel_run, HISTORY),
        Route(RUNS, "WaitRun", check.wait_run),  # long-polls the run (run_watch.py)
        Route(RUNS, "ReplayRun", check.get_run, HISTORY),
        Route(RUNS, "WatchRun", check.watch_run),  # streams the run's event log (handlers.py)
        Route(RUNS, "WatchRuns", check.watch_runs),  # streams a namespace's events (handlers.py)
        Route(RUNS, "ListRunLogs", check.list_run_logs, HISTORY),
        Route(WORKERS, "RegisterWorker", check.register),  # matching, then history's schedules
        Route(WORKERS, "PollAttempt", check.poll, precheck=check.poll_wait),  # timeout from its wait
        Route(WORKERS, "Heartbeat", check.attempt_ref, HISTORY),
        Route(WORKERS, "RecordStep", check.record_step, HISTORY),
        Route(WORKERS, "FinishAttempt", check.finish, HISTORY),
        Route(WORKERS, "UpdateRunMetadata", check.update_metadata, HISTORY),
        Route(WORKERS, "BatchWrite", check.batch_write),
        Route(WORKERS, "AppendRunOutput", check.append_run_output, HISTORY),
        Route(WAITS, "SendEvent", check.send_event, HISTORY),
        Route(WAITS, "CreateWaitToken", check.create_token, HISTORY),
        Route(WAITS, "CompleteWaitToken", check.complete_token, HISTORY),
        Route(WAITS, "GetWaitToken", check.token_ref, HISTORY),
        Route(SCHEDULES, "CreateSchedule", check.create_schedule, HISTORY),
        Route(SCHEDULES, "ListSchedules", check.list_schedules, HISTORY),
        Route(SCHEDULES, "PauseSchedule", check.schedule_ref, HISTORY),
        Route(SCHEDULES, "ResumeSchedule", check.schedule_ref, HISTORY),
        Route(SCHEDULES, "DeleteSchedule", check.schedule_ref, HISTORY),
        Route(QUEUES, "UpdateQueue", check.update_queue, MATCHING),
        Route(QUEUES, "ListQueues", check.nothing, MATCHING),
        Route(QUEUES, "PauseQueue", check.queue_ref, MATCHING),
        Route(QUEUES, "ResumeQueue", check.queue_ref, MATCHING),
        Route(QUEUES, "ListWorkers", check.nothing, MATCHING),
    ]
}
