"""The HTTP routing table: each HTTP method and path, and the public gRPC
method (services/frontend/routes.py) it calls. Everything else is derived from
the gRPC method's request message: the path's {fields} come from the path, the
other fields from the query (GET, DELETE) or from the JSON body (POST, PATCH).
The OpenAPI document (openapi.py) and the request reading (app.py) both read
this table, so they cannot disagree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from cairn import run_json
from cairn.v1 import run_service_pb2 as rpb
from services.frontend.routes import KEYS, QUEUES, ROUTES, RUNS, SCHEDULES, WAITS
from services.frontend.routes import Route as GrpcRoute
from services.frontend.routes import path as grpc_path

_PATH_FIELD = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class HttpRoute:
    """One operation of the HTTP API."""

    verb: str  # GET, POST, PATCH, DELETE
    path: str  # /v1/runs/{run_id}: each {name} a field of the request message
    grpc: GrpcRoute
    summary: str
    # A server-streaming method, answered as Server-Sent Events (text/event-stream).
    stream: bool = False
    # Query parameters named otherwise than their request field: (field, name).
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def method(self) -> MethodDescriptor:
        return self.grpc.service.methods_by_name[self.grpc.method]

    @property
    def request_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def response_type(self) -> Descriptor:
        return self.method.output_type

    def new_request(self) -> Message:
        return GetMessageClass(self.request_type)()

    def response_class(self) -> type[Message]:
        return GetMessageClass(self.response_type)

    @property
    def path_fields(self) -> list[str]:
        return _PATH_FIELD.findall(self.path)

    @property
    def has_body(self) -> bool:
        return self.verb in ("POST", "PATCH")

    def query_fields(self) -> list[FieldDescriptor]:
        """The request's fields read from the query string (none when there is a body)."""
        if self.has_body:
            return []
        return [f for f in self.request_type.fields if f.name not in self.path_fields]

    def query_name(self, field: FieldDescriptor) -> str:
        """The query parameter of a request field."""
        return dict(self.renamed).get(field.name, field.name)

    @property
    def operation_id(self) -> str:
        return self.grpc.method[0].lower() + self.grpc.method[1:]

    @property
    def tag(self) -> str:
        return self.grpc.service.name.removesuffix("Service")


def _route(verb: str, path: str, service: Any, method: str, summary: str, **more: Any) -> HttpRoute:
    return HttpRoute(verb, path, ROUTES[grpc_path(service, method)], summary, **more)


HTTP_ROUTES: list[HttpRoute] = [
    _route("POST", "/v1/runs", RUNS, "TriggerRun", "Trigger a run of a task"),
    _route("POST", "/v1/runs/batch", RUNS, "BatchTriggerRuns", "Trigger several runs, all or none"),
    _route(
        "GET",
        "/v1/runs",
        RUNS,
        "ListRuns",
        "List runs, newest first, by status, task, tag, parent, queue or creation time",
    ),
    # Before /v1/runs/{run_id}, which would take "watch" for a run id.
    _route(
        "GET",
        "/v1/runs/watch",
        RUNS,
        "WatchRuns",
        "Follow runs of a task and tags as they change (Server-Sent Events; never ends)",
        stream=True,
        renamed=(("tags", "tag"),),
    ),
    _route(
        "GET",
        "/v1/runs/{run_id}/watch",
        RUNS,
        "WatchRun",
        "Follow a run's changes until it ends (Server-Sent Events; resumable with Last-Event-ID)",
        stream=True,
    ),
    _route("GET", "/v1/runs/{run_id}", RUNS, "GetRun", "A run with its attempts, steps and events"),
    _route("GET", "/v1/runs/{run_id}/logs", RUNS, "ListRunLogs", "The lines a run logged, oldest first"),
    _route("POST", "/v1/runs/{run_id}/cancel", RUNS, "CancelRun", "Cancel a run and its children"),
    _route("GET", "/v1/runs/{run_id}/wait", RUNS, "WaitRun", "Wait until a run ends, up to timeout seconds"),
    _route("POST", "/v1/runs/{run_id}/replay", RUNS, "ReplayRun", "A new run of a run's task and payload"),
    _route("POST", "/v1/events", WAITS, "SendEvent", "Send an event to a run, or by name and key"),
    _route("POST", "/v1/wait-tokens", WAITS, "CreateWaitToken", "Create a wait token"),
    _route("GET", "/v1/wait-tokens/{token_id}", WAITS, "GetWaitToken", "A wait token"),
    _route(
        "POST", "/v1/wait-tokens/{token_id}/complete", WAITS, "CompleteWaitToken", "Complete a wait token"
    ),
    _route("POST", "/v1/schedules", SCHEDULES, "CreateSchedule", "Create or replace a cron schedule"),
    _route("GET", "/v1/schedules", SCHEDULES, "ListSchedules", "List schedules, of a task or all"),
    _route("POST", "/v1/schedules/{schedule_id}/pause", SCHEDULES, "PauseSchedule", "Pause a schedule"),
    _route("POST", "/v1/schedules/{schedule_id}/resume", SCHEDULES, "ResumeSchedule", "Resume a schedule"),
    _route("DELETE", "/v1/schedules/{schedule_id}", SCHEDULES, "DeleteSchedule", "Delete a schedule"),
    _route("GET", "/v1/queues", QUEUES, "ListQueues", "List queues with their settings, depth and running"),
    _route("PATCH", "/v1/queues/{name}", QUEUES, "UpdateQueue", "Change a queue's limits"),
    _route("POST", "/v1/queues/{name}/pause", QUEUES, "PauseQueue", "Pause a queue's dispatch"),
    _route("POST", "/v1/queues/{name}/resume", QUEUES, "ResumeQueue", "Resume a queue's dispatch"),
    _route("GET", "/v1/workers", QUEUES, "ListWorkers", "List workers: tasks, version, slots, last seen"),
    _route("POST", "/v1/keys", KEYS, "CreateKey", "Create an API key; its secret is in this answer only"),
    _route("GET", "/v1/keys", KEYS, "ListKeys", "List the namespace's API keys (never their secrets)"),
    _route("POST", "/v1/keys/{id}/revoke", KEYS, "RevokeKey", "Revoke an API key at once"),
]


def with_inputs(request: Message, response: Message) -> Message:
    """A trigger's answer with each new run's input (the payload sent): the
    server does not send it back, and the CLI shows it the same way."""
    if isinstance(response, rpb.TriggerRunResponse) and isinstance(request, rpb.TriggerRunRequest):
        response.run.CopyFrom(run_json.triggered_run(response, request.payload))
    elif isinstance(response, rpb.BatchTriggerRunsResponse) and isinstance(
        request, rpb.BatchTriggerRunsRequest
    ):
        for item, sent in zip(response.runs, request.runs):
            item.run.CopyFrom(run_json.triggered_run(item, sent.payload))
    return response
