"""Requests for every public method, built from the descriptors of the public
services (services/frontend/routes.py SERVICES), for the tests generated from
them (test_isolation_generated.py, test_roles_generated.py): a new method is
called by them without a line of test code, unless its request has a field
this module does not know, which fails them naming the field (add it to
FIELDS, or the method to EXTRAS).

- ``public_methods()``: every method of every public service with its route.
- ``Target``: the resources a request names (namespace, run, attempt and its
  token, wait token, schedule, queue, task, worker, key).
- ``build(descriptor, target)``: a minimally valid request naming the target,
  filled field by field by name (FIELDS), then by the method's EXTRAS.
- ``call(channel, method, request)``: the Answer (status, details, responses);
  a stream answers with its first message, or DEADLINE_EXCEEDED when none came.
- ``http_request(route, message)``: the HTTP verb, path, query and JSON body
  that carry the same request.
- ``create_key(cluster, namespace, role)``: a key of a role, made with the
  session's admin key.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.struct_pb2 import Struct
from harness import Cluster, json_payload, seconds

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import worker_service_pb2 as wpb
from services.frontend.http.messages import enum_names
from services.frontend.http.routes import HttpRoute
from services.frontend.routes import ROUTES, SERVICES, Route, path

CALL_TIMEOUT = 10.0
STREAM_WAIT = 1.0  # how long a stream may take for its first message
SHORT_WAIT = 0.2  # of a WaitRun or PollAttempt that is let through
FAR_CRON = "0 0 1 1 *"  # once a year: a schedule that does not fire during a test
ROLES = ("client", "worker", "admin")


@dataclass(frozen=True)
class Method:
    service: ServiceDescriptor
    descriptor: MethodDescriptor
    route: Route

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def path(self) -> str:
        return path(self.service, self.descriptor.name)

    @property
    def stream(self) -> bool:
        return self.descriptor.server_streaming

    def __str__(self) -> str:
        return f"{self.service.name}.{self.name}"


def public_methods() -> list[Method]:
    """Every method of the public services, in declaration order; fails for a
    method without a route."""
    methods = []
    for service in SERVICES:
        for m in service.methods:
            route = ROUTES.get(path(service, m.name))
            assert route is not None, f"{path(service, m.name)} has no route in services/frontend/routes.py"
            methods.append(Method(service, m, route))
    return methods


@dataclass
class Target:
    """What a request names. `run_id` is also the parent of a trigger;
    `attempt`, `attempt_token` and `position` an attempt of that run and the
    step it may record; `after_event_id` where a namespace's watch starts."""

    namespace: str
    run_id: str = "00000000-0000-4000-8000-000000000000"
    attempt: int = 1
    attempt_token: str = "0" * 32
    position: int = 0
    step_name: str = "step"
    token_id: str = "no-such-token"
    schedule_id: str = "no-such-schedule"
    queue: str = "no-such-queue"
    task_id: str = "no-such-task"
    worker_id: str = "no-such-worker"
    key_id: str = "0123456789abcdef"
    after_event_id: int = 0
    payload: Any = field(default_factory=lambda: {"from": "generated"})


class NoCase(AssertionError):
    """A request field this module cannot fill."""


Filler = Callable[[Target, FieldDescriptor], Any]
SKIP = object()  # leave the field unset


def _struct(value: dict[str, Any]) -> Struct:
    s = Struct()
    s.update(value)
    return s


def _in(*messages: str) -> Callable[[FieldDescriptor], bool]:
    return lambda f: f.containing_type.name in messages


def _duration(t: Target, f: FieldDescriptor) -> Any:
    if f.message_type is None or f.message_type.full_name != Duration.DESCRIPTOR.full_name:
        return SKIP  # FinishAttemptRequest.wait, a WaitSpec: only with SUSPENDED
    long = _in("CreateWaitTokenRequest")(f)
    return seconds(3600 if long else SHORT_WAIT)


# Every request field by name: what it is set to (SKIP: left unset, an optional
# filter or option). A nested message field is built by build() in turn.
FIELDS: dict[str, Filler] = {
    "namespace": lambda t, f: t.namespace,
    "run_id": lambda t, f: t.run_id,
    "parent_run_id": lambda t, f: t.run_id,
    "attempt": lambda t, f: t.attempt,
    "attempt_token": lambda t, f: t.attempt_token,
    "position": lambda t, f: t.position,
    "token_id": lambda t, f: t.token_id,
    "schedule_id": lambda t, f: t.schedule_id,
    "task_id": lambda t, f: t.task_id,
    "queue": lambda t, f: t.queue,
    "worker_id": lambda t, f: t.worker_id,
    "id": lambda t, f: t.key_id,
    "name": lambda t, f: (
        t.queue
        if "Queue" in f.containing_type.name
        else t.step_name
        if _in("RecordStepRequest")(f)
        else "gen"
    ),
    "payload": lambda t, f: json_payload(t.payload),
    "output": lambda t, f: json_payload(t.payload),
    "status": lambda t, f: cpb.STEP_STATUS_COMPLETED,
    "outcome": lambda t, f: wpb.ATTEMPT_OUTCOME_COMPLETED,
    "role": lambda t, f: kpb.KEY_ROLE_CLIENT,
    "tries": lambda t, f: 1,
    "metadata": lambda t, f: _struct({"from": "generated"}),
    "cron": lambda t, f: FAR_CRON,
    "version": lambda t, f: "generated",
    "slots": lambda t, f: 1,
    "max_attempts": lambda t, f: 1,
    "concurrency_limit": lambda t, f: 3,
    "after_event_id": lambda t, f: t.after_event_id if _in("WatchRunsRequest")(f) else 0,
    "wait": _duration,
    "timeout": _duration,
    "outputs": lambda t, f: [wpb.RunOutput(log=cpb.LogLine(level="INFO", message="generated"))],
    "tasks": lambda t, f: [wpb.TaskDefinition(task_id=t.task_id, queue=t.queue)],
    "writes": lambda t, f: [wpb.AttemptWrite(record_step=build(wpb.RecordStepRequest.DESCRIPTOR, t))],
    "runs": lambda t, f: [build(f.message_type, t)],
    **{
        name: lambda t, f: SKIP
        for name in (
            "idempotency_key",
            "request_id",
            "options",
            "statuses",
            "page_size",
            "page_token",
            "tag",
            "tags",
            "created_after",
            "created_before",
            "reason",
            "after_id",
            "error",
            "try_errors",
            "task_ids",
            "key",
            "timezone",
            "deduplication_key",
            "expires_at",
            "all_namespaces",
            "rate_limit",
            "max_depth",
        )
    },
}

# Per method (gRPC path): changes after the generic filling, for what the
# field names cannot say. Empty while the names suffice.
EXTRAS: dict[str, Callable[[Message, Target], None]] = {}


def build(descriptor: Descriptor, target: Target) -> Message:
    """A request of `descriptor` naming `target`; NoCase for a field FIELDS
    does not know."""
    message = GetMessageClass(descriptor)()
    unknown = [f.name for f in descriptor.fields if f.name not in FIELDS]
    if unknown:
        raise NoCase(
            f"{descriptor.full_name}: no rule for field(s) {', '.join(unknown)}: add them to "
            "FIELDS or the method to EXTRAS in tests/cluster/generated_requests.py"
        )
    for f in descriptor.fields:
        value = FIELDS[f.name](target, f)
        if value is SKIP:
            continue
        if f.is_repeated:
            getattr(message, f.name).extend(value)
        elif f.message_type is not None:
            getattr(message, f.name).CopyFrom(value)
        else:
            setattr(message, f.name, value)
    return message


def request(method: Method, target: Target) -> Message:
    """The request of a method naming the target, with the method's extras."""
    message = build(method.descriptor.input_type, target)
    extra = EXTRAS.get(method.path)
    if extra is not None:
        extra(message, target)
    return message


def names_field(descriptor: Descriptor, name: str, depth: int = 4) -> bool:
    """Whether a message has a field `name`, or a message field that has one (to `depth`)."""
    for f in descriptor.fields:
        if f.name == name:
            return True
        if depth and f.message_type is not None and not f.message_type.full_name.startswith("google."):
            if names_field(f.message_type, name, depth - 1):
                return True
    return False


# ---- calls -----------------------------------------------------------------------------


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str
    responses: list[Message]

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def text(self) -> str:
        """Everything the caller got: the message and every response, as text."""
        parts = [self.details] + [
            text_format.MessageToString(r, as_utf8=True, as_one_line=True) for r in self.responses
        ]
        return "\n".join(parts)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details[:300]}" if not self.ok else f"OK ({len(self.responses)})"


def call(channel: grpc.Channel, method: Method, message: Message, timeout: float = CALL_TIMEOUT) -> Answer:
    """Calls a method; a stream's first message (DEADLINE_EXCEEDED with no
    response when none came within STREAM_WAIT)."""
    response_class = GetMessageClass(method.descriptor.output_type)
    kind = channel.unary_stream if method.stream else channel.unary_unary
    stub = kind(
        method.path,
        request_serializer=type(message).SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        if not method.stream:
            return Answer(grpc.StatusCode.OK, "", [stub(message, timeout=timeout)])
        stream = stub(message, timeout=STREAM_WAIT)
        try:
            first = next(stream)
        except StopIteration:
            return Answer(grpc.StatusCode.OK, "", [])
        finally:
            stream.cancel()
        return Answer(grpc.StatusCode.OK, "", [first])
    except grpc.RpcError as exc:
        return Answer(exc.code(), exc.details() or "", [])


# ---- HTTP ------------------------------------------------------------------------------


def to_json(message: Message) -> dict[str, Any]:
    """A request message as the HTTP API reads it (services/frontend/http/messages.py):
    payloads as JSON values, Durations in seconds, Timestamps in RFC 3339, enums
    by their lowercase names, Structs as objects."""
    out: dict[str, Any] = {}
    for f, value in message.ListFields():
        if f.is_repeated:
            out[f.name] = [_json_value(f, v) for v in value]
        else:
            out[f.name] = _json_value(f, value)
    return out


def _json_value(f: FieldDescriptor, value: Any) -> Any:
    if f.message_type is not None:
        name = f.message_type.full_name
        if name == cpb.Payload.DESCRIPTOR.full_name:
            return json.loads(value.data) if value.data else None
        if name == "google.protobuf.Duration":
            return value.ToNanoseconds() / 1e9
        if name == "google.protobuf.Timestamp":
            return value.ToJsonString()
        if name == "google.protobuf.Struct":
            return json_format.MessageToDict(value)
        return to_json(value)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return {v: k for k, v in enum_names(f.enum_type).items()}.get(value, value)
    return value


def http_request(route: HttpRoute, message: Message) -> tuple[str, str, list[tuple[str, str]], Any]:
    """(verb, path, query, body) of an HTTP call carrying `message`."""
    data = to_json(message)
    url = route.path
    for name in route.path_fields:
        url = url.replace("{" + name + "}", urllib.parse.quote(str(data.pop(name, "")), safe=""))
    if route.has_body:
        return route.verb, url, [], data
    query: list[tuple[str, str]] = []
    for f in route.query_fields():
        if f.name not in data:
            continue
        values = data[f.name] if f.is_repeated else [data[f.name]]
        query += [(route.query_name(f), v if isinstance(v, str) else json.dumps(v)) for v in values]
    return route.verb, url, query, None


# ---- keys ------------------------------------------------------------------------------


def create_key(cluster: Cluster, namespace: str, role: str) -> tuple[str, str]:
    """(secret, id) of a new key of `role` in `namespace`, made with the session's admin key."""
    stub = kgrpc.KeyServiceStub(cluster.channel())
    made = stub.CreateKey(
        kpb.CreateKeyRequest(
            namespace=namespace,
            role=kpb.KeyRole.Value(f"KEY_ROLE_{role.upper()}"),
            name=f"{namespace} {role}",
        ),
        timeout=CALL_TIMEOUT,
    )
    return made.secret, made.key.id
