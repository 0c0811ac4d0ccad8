"""Roles, call by call (issue 14, must-show 2), generated from the routing
tables: every route of services/frontend/routes.py ROUTES and every HTTP route
of HTTP_ROUTES is called with a key of each role (client, worker, admin) in
the key's own namespace, on that namespace's own resources:

- a role the route does not name: PERMISSION_DENIED (HTTP 403), and nothing
  in the database changed (every row of every table, compared);
- a role it names: anything but UNAUTHENTICATED or PERMISSION_DENIED (401,
  403), and no INTERNAL, UNKNOWN or DATA_LOSS (5xx).

A worker's writes name a fresh attempt, with the attempt token of its
assignment, so an allowed write is refused by nothing but its role. And
auth.authorize's one rule beyond the table: a worker key triggers only child
runs (with parent_run_id), so without one its trigger is PERMISSION_DENIED.

Requests come from generated_requests.py, field by field from each request's
descriptor; a method whose request has a field it cannot fill fails here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc
import httpx
import pytest
from generated_requests import (
    ROLES,
    STREAM_WAIT,
    Answer,
    Method,
    NoCase,
    Target,
    call,
    create_key,
    http_request,
    names_field,
    public_methods,
    request,
)
from google.protobuf.message import Message
from harness import Cluster, auth, json_payload, seconds, wait_for
from namespace_rows import SERVICE_TABLES

from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import queue_service_pb2_grpc as qgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import schedule_service_pb2_grpc as sgrpc
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import wait_service_pb2_grpc as wsgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from cairn_cli.embedded import free_port
from services.frontend.http.routes import HTTP_ROUTES, HttpRoute
from services.frontend.routes import ROUTES, WORKERS, path

NS = "roles"
TASK, QUEUE, WORKER_ID = "roles-task", "roles-queue", "roles-worker"
REFUSED_AS_CALLER = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
RPC = 15.0


class Namespace:
    """The namespace's own resources, made with the session's admin key (a run,
    a wait token, a schedule, a queue, a registered worker, a key to revoke),
    a worker of each role's key that may register one (a worker id is its
    registering key's), and fresh attempts for a worker's writes."""

    def __init__(self, cluster: Cluster, keys: dict[str, str]) -> None:
        channel = cluster.channel()
        self.runs = rgrpc.RunServiceStub(channel)
        self.pollers = {None: wgrpc.WorkerServiceStub(channel)}
        self.worker_ids: dict[str | None, str] = {None: WORKER_ID}
        may_register = (
            ROUTES[path(WORKERS, "RegisterWorker")].roles & ROUTES[path(WORKERS, "PollAttempt")].roles
        )
        for role in [None, *sorted(may_register)]:
            if role is not None:
                self.pollers[role] = wgrpc.WorkerServiceStub(cluster.channel(key=keys[role]))
                self.worker_ids[role] = f"{WORKER_ID}-{role}"
            task = wpb.TaskDefinition(task_id=TASK, queue=QUEUE)
            register = wpb.RegisterWorkerRequest(
                namespace=NS, worker_id=self.worker_ids[role], tasks=[task], slots=100
            )
            self.pollers[role].RegisterWorker(register, timeout=RPC)
        qgrpc.QueueServiceStub(channel).UpdateQueue(
            qpb.UpdateQueueRequest(namespace=NS, name=QUEUE, max_depth=10_000), timeout=RPC
        )
        token = wsgrpc.WaitServiceStub(channel).CreateWaitToken(
            wspb.CreateWaitTokenRequest(namespace=NS, timeout=seconds(3600)), timeout=RPC
        )
        sgrpc.ScheduleServiceStub(channel).CreateSchedule(
            spb.CreateScheduleRequest(
                namespace=NS,
                schedule_id="roles-schedule",
                task_id=TASK,
                cron="0 0 1 1 *",
                payload=json_payload(1),
            ),
            timeout=RPC,
        )
        _, spare_key = create_key(cluster, NS, "client")
        self.target = Target(
            namespace=NS,
            run_id=self.trigger(),
            token_id=token.token.id,
            schedule_id="roles-schedule",
            queue=QUEUE,
            task_id=TASK,
            worker_id=WORKER_ID,
            key_id=spare_key,
        )

    def trigger(self) -> str:
        request = rpb.TriggerRunRequest(namespace=NS, task_id=TASK, payload=json_payload({"n": 1}))
        return str(self.runs.TriggerRun(request, timeout=RPC).run.id)

    def fresh_attempt(self, target: Target, role: str) -> Target:
        """The target with an attempt of its own: a run triggered and handed to
        the role's worker (the session's, for a role that may not poll), with
        its assignment's token."""
        self.trigger()
        poller = role if role in self.pollers else None
        poll = wpb.PollAttemptRequest(
            namespace=NS, worker_id=self.worker_ids[poller], wait=seconds(10), max_attempts=1
        )
        (assignment,) = self.pollers[poller].PollAttempt(poll, timeout=RPC).assignments
        return replace(
            target,
            run_id=assignment.run_id,
            attempt=assignment.attempt,
            attempt_token=assignment.attempt_token,
            position=len(assignment.steps),
            step_name="roles-step",
        )

    def target_for(self, method: Method, role: str) -> Target:
        """What a role's call of a method names: its own worker, and a fresh
        attempt when the method writes to one."""
        target = replace(self.target, worker_id=self.worker_ids.get(role, WORKER_ID))
        if names_field(method.descriptor.input_type, "attempt_token"):
            return self.fresh_attempt(target, role)
        return target


def database_state(cluster: Cluster) -> dict[str, str]:
    """A digest of every row of every table but the services' own bookkeeping
    (namespace_rows.SERVICE_TABLES): a refused call changes none. Taken
    once history has done what is due (a parent's signal from a child that
    ended, say): no timer is due."""
    wait_for(
        lambda: cluster.sql_value("SELECT count(*) FROM timers WHERE due_at <= now()") == 0,
        10,
        message="history never handled its due timers",
    )
    tables = [
        r["table_name"]
        for r in cluster.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        )
        if r["table_name"] not in SERVICE_TABLES
    ]
    digests = ", ".join(
        f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {t} t) AS {t}"
        for t in tables
    )
    return dict(cluster.sql(f"SELECT {digests}")[0])


def changed_tables(cluster: Cluster, before: dict[str, str]) -> list[str]:
    after = database_state(cluster)
    return [t for t in after if after[t] != before.get(t)]


@pytest.fixture
def roles(cluster_factory: Any) -> tuple[Cluster, str, dict[str, str], Namespace]:
    http = f"127.0.0.1:{free_port()}"
    # Long leases: no attempt of the test expires while it compares the database.
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": http}, lease_seconds=600)
    keys = {role: create_key(cluster, NS, role)[0] for role in ROLES}
    return cluster, f"http://{http}", keys, Namespace(cluster, keys)


def judge(allowed: bool, answer: Answer) -> str | None:
    if answer.code in BROKEN:
        return f"broke: {answer}"
    if allowed:
        return f"refused as the caller: {answer}" if answer.code in REFUSED_AS_CALLER else None
    return (
        None
        if answer.code == grpc.StatusCode.PERMISSION_DENIED
        else f"expected PERMISSION_DENIED, got {answer}"
    )


def test_every_route_with_every_role(roles: Any) -> None:
    cluster, base, keys, namespace = roles
    channels = {role: cluster.channel(key=key) for role, key in keys.items()}
    problems: list[str] = []
    calls = 0
    for method in public_methods():
        for role in ROLES:
            allowed = role in method.route.roles
            try:
                message = request(method, namespace.target_for(method, role))
            except NoCase as exc:
                problems.append(f"{method}: {exc}")
                break
            before = None if allowed else database_state(cluster)
            answer = call(channels[role], method, message)
            calls += 1
            why = judge(allowed, answer)
            if why is None and before is not None and (changed := changed_tables(cluster, before)):
                why = f"refused, but the database changed: {changed}"
            if why is not None:
                problems.append(
                    f"{method} with a {role} key ({'allowed' if allowed else 'not allowed'}): {why}"
                )
    print(f"\nroles: {calls} gRPC calls, {len(public_methods())} methods x {len(ROLES)} roles")
    assert not problems, f"{len(problems)} failures:\n" + "\n".join(problems)
    a_worker_key_triggers_only_child_runs(cluster, base, keys, namespace)


def http_status(client: httpx.Client, route: HttpRoute, message: Message) -> tuple[int, str]:
    """(status, start of the body) of an HTTP call; a stream is left once its headers came."""
    verb, url, query, body = http_request(route, message)
    if not route.stream:
        answer = client.request(verb, url, params=query, json=body)
        return answer.status_code, answer.text[:300]
    try:
        with client.stream(verb, url, params=query, timeout=httpx.Timeout(RPC, read=STREAM_WAIT)) as answer:
            text = "" if answer.status_code == 200 else answer.read().decode(errors="replace")[:300]
            return answer.status_code, text
    except httpx.ReadTimeout:
        return 200, ""


def test_every_http_route_with_every_role(roles: Any) -> None:
    cluster, base, keys, namespace = roles
    methods = {m.path: m for m in public_methods()}
    clients = {
        role: httpx.Client(base_url=base, headers=auth.headers(key), timeout=RPC)
        for role, key in keys.items()
    }
    problems: list[str] = []
    calls = 0
    for route in HTTP_ROUTES:
        method = methods[route.grpc.path]
        for role in ROLES:
            allowed = role in route.grpc.roles
            message = request(method, namespace.target_for(method, role))
            before = None if allowed else database_state(cluster)
            status, text = http_status(clients[role], route, message)
            calls += 1
            if status >= 500:
                why: str | None = f"broke: {status} {text}"
            elif allowed:
                why = f"refused as the caller: {status} {text}" if status in (401, 403) else None
            else:
                why = None if status == 403 else f"expected 403, got {status} {text}"
            if why is None and before is not None and (changed := changed_tables(cluster, before)):
                why = f"refused, but the database changed: {changed}"
            if why is not None:
                problems.append(f"{route.verb} {route.path} with a {role} key: {why}")
    for client in clients.values():
        client.close()
    print(f"\nroles: {calls} HTTP calls, {len(HTTP_ROUTES)} routes x {len(ROLES)} roles")
    assert not problems, f"{len(problems)} failures:\n" + "\n".join(problems)


def a_worker_key_triggers_only_child_runs(
    cluster: Cluster, base: str, keys: dict[str, str], namespace: Namespace
) -> None:
    """auth.authorize: a worker key's trigger needs parent_run_id (its run's
    child), over gRPC and HTTP; nothing is written otherwise."""
    runs = rgrpc.RunServiceStub(cluster.channel(key=keys["worker"]))
    orphan = rpb.TriggerRunRequest(namespace=NS, task_id=TASK, payload=json_payload(1))
    before = database_state(cluster)
    with pytest.raises(grpc.RpcError) as refused:
        runs.TriggerRun(orphan, timeout=RPC)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    assert "parent_run_id" in (refused.value.details() or "")
    with httpx.Client(base_url=base, headers=auth.headers(keys["worker"]), timeout=RPC) as http:
        answer = http.post("/v1/runs", json={"namespace": NS, "task_id": TASK, "payload": 1})
        assert answer.status_code == 403, answer.text
    assert database_state(cluster) == before
    parent = namespace.trigger()
    child = runs.TriggerRun(
        rpb.TriggerRunRequest(namespace=NS, task_id=TASK, payload=json_payload(1), parent_run_id=parent),
        timeout=RPC,
    ).run
    assert child.parent_run_id == parent
    with httpx.Client(base_url=base, headers=auth.headers(keys["worker"]), timeout=RPC) as http:
        body = {"namespace": NS, "task_id": TASK, "payload": 1, "parent_run_id": parent}
        answer = http.post("/v1/runs", json=body)
        assert answer.status_code == 200, answer.text
