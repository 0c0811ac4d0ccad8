"""Isolation, call by call (issue 14, must-show 1), generated from the public
service descriptors: namespace b holds real state (a worker process of its own
holding a run in a step, completed runs, a queued run in a paused queue, a
buffered event, wait tokens, a schedule, queue settings, log lines, metadata,
its keys), and every method of every public service, and every HTTP route, is
called with each key of namespace a (admin, client, worker):

- naming namespace b: PERMISSION_DENIED (HTTP 403);
- naming namespace a but b's ids (runs, attempt and its real attempt token,
  wait tokens, schedule, queues, task, worker, keys, event ids): refused, or
  answered with nothing of b; a request whose resource is one of b's runs,
  tokens or keys (run_id, parent_run_id of a trigger, token_id, id) must be
  refused.

No answer may hold anything of b that the request did not carry (its payload
secret, ids, attempt token), and b's rows in every table (found by namespace,
or by a uuid column naming one of b's runs) are the same before and after.
Then b's held run, released, completes with what its own worker recorded, and
b's keys still work.

Requests are built by generated_requests.py from each request's descriptor;
a method whose request has a field it cannot fill fails here. A stream
(WatchRun, WatchRuns, and their HTTP event streams) is read for its first
message; none within a second is nothing read."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from api_helpers import APPS_DIR
from generated_requests import (
    ROLES,
    STREAM_WAIT,
    Answer,
    NoCase,
    Target,
    call,
    create_key,
    http_request,
    names_field,
    public_methods,
    request,
)
from google.protobuf import text_format
from google.protobuf.message import Message
from harness import Cluster, auth, json_payload, seconds, wait_for, wait_registered
from namespace_rows import SERVICE_TABLES

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
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

DENIED = grpc.StatusCode.PERMISSION_DENIED
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# A request naming one of these must be refused in namespace a when it names b's
# resource: the resource itself (a run, a wait token, a key) or a trigger's parent.
STRICT_FIELDS = {"run_id", "token_id", "id", "parent_run_id"}
# ...except where the field is a filter, whose honest answer is an empty page.
FILTERS = {"cairn.v1.ListRunsRequest.parent_run_id"}
# Columns that b's own worker changes while it holds its run (heartbeats, polls).
VOLATILE = {("workers", "last_seen_at"), ("timers", "due_at")}
RPC = 15.0
# b's tasks (tests/apps/isolation_tasks.py) by their queues; a serves the same names.
ISOLATION_TASKS = {"iso-hold": "iso-hold", "iso-echo": "iso-echo", "iso-parked": "iso-parked"}


@dataclass
class B:
    """What namespace b holds, and the strings that are b's alone."""

    secret: str
    base: Target  # b's resources (the held run, a token, the schedule, ...)
    runs: list[str]  # held, completed, queued
    tokens: list[str]
    key_ids: list[str]
    held_path: Path
    markers: set[str]  # every string that is b's alone
    names: set[str]  # those of them a may give its own resources too


# ---- b's state -------------------------------------------------------------------------


def make_b(cluster: Cluster, keys: dict[str, dict[str, tuple[str, str]]], work: Path) -> B:
    secret = f"b-secret-{secrets.token_hex(6)}"
    client = cluster.channel(key=keys["b"]["client"][0])
    admin = cluster.channel(key=keys["b"]["admin"][0])
    runs, tokens_stub = rgrpc.RunServiceStub(client), wsgrpc.WaitServiceStub(client)
    worker = cluster.start_worker(
        "isolation_tasks",
        cwd=APPS_DIR,
        env={"CAIRN_API_KEY": keys["b"]["worker"][0], "ISOLATION_DIR": str(work)},
        args=["--namespace", "b"],
    )
    wait_registered(cluster, *ISOLATION_TASKS, worker=worker)
    queues = qgrpc.QueueServiceStub(admin)
    queues.PauseQueue(qpb.PauseQueueRequest(namespace="b", name="iso-parked"), timeout=RPC)
    queues.UpdateQueue(
        qpb.UpdateQueueRequest(
            namespace="b",
            name="iso-echo",
            concurrency_limit=7,
            max_depth=1000,
            rate_limit=qpb.RateLimit(limit=50, period=seconds(60)),
        ),
        timeout=RPC,
    )

    def trigger(task_id: str) -> str:
        request = rpb.TriggerRunRequest(
            namespace="b", task_id=task_id, payload=json_payload({"secret": secret})
        )
        return str(runs.TriggerRun(request, timeout=RPC).run.id)

    completed = [trigger("iso-echo") for _ in range(2)]
    for run_id in completed:
        done = runs.WaitRun(rpb.WaitRunRequest(namespace="b", run_id=run_id, timeout=seconds(30)), timeout=40)
        assert done.done and secret in done.run.output.data.decode(), done.run
    held_id = trigger("iso-hold")
    parked = trigger("iso-parked")
    held_path = work / f"held-{held_id}.json"
    wait_for(held_path.exists, 30, message="b's worker never held its run")
    held = json.loads(held_path.read_text())
    events = wsgrpc.WaitServiceStub(client)
    events.SendEvent(
        wspb.SendEventRequest(namespace="b", run_id=held_id, name="iso-event", payload=json_payload(secret)),
        timeout=RPC,
    )
    tokens = [
        tokens_stub.CreateWaitToken(
            wspb.CreateWaitTokenRequest(namespace="b", timeout=seconds(3600), **fields), timeout=RPC
        ).token.id
        for fields in ({}, {"run_id": held_id})
    ]
    schedule_id = f"iso-sched-{secrets.token_hex(4)}"
    sgrpc.ScheduleServiceStub(admin).CreateSchedule(
        spb.CreateScheduleRequest(
            namespace="b",
            schedule_id=schedule_id,
            task_id="iso-echo",
            cron="0 0 1 1 *",
            payload=json_payload({"secret": secret}),
        ),
        timeout=RPC,
    )
    workers = qgrpc.QueueServiceStub(client).ListWorkers(qpb.ListWorkersRequest(namespace="b"), timeout=RPC)
    (worker_id,) = [w.worker_id for w in workers.workers]
    first_event = cluster.sql_value(
        "SELECT min(e.id) FROM run_events e JOIN runs r ON r.id = e.run_id WHERE r.namespace = 'b'"
    )
    base = Target(
        namespace="b",
        run_id=held_id,
        attempt=held["attempt"],
        attempt_token=held["attempt_token"],
        position=1,
        step_name="hold",
        token_id=tokens[0],
        schedule_id=schedule_id,
        queue="iso-echo",
        task_id="iso-echo",
        worker_id=worker_id,
        key_id=keys["b"]["admin"][1],
        after_event_id=int(first_event),
        payload={"from": "a"},
    )
    key_ids = [keys["b"][role][1] for role in ROLES]
    all_runs = [held_id, *completed, parked]
    markers = {secret, held["attempt_token"], worker_id, schedule_id, *all_runs, *tokens, *key_ids}
    names = {worker_id, schedule_id}
    return B(secret, base, [held_id, completed[0], parked], tokens, key_ids, held_path, markers, names)


def targets(method_input: Any, b: B, namespace: str) -> list[Target]:
    """The targets a method is called on: one per b run when it names a run, per
    token when it names a token, per key when it names a key; else b's base."""
    base = replace(b.base, namespace=namespace)
    if names_field(method_input, "run_id") or names_field(method_input, "parent_run_id"):
        return [replace(base, run_id=r) for r in b.runs]
    if names_field(method_input, "token_id"):
        return [replace(base, token_id=t) for t in b.tokens]
    if names_field(method_input, "id", depth=0):
        return [replace(base, key_id=k) for k in b.key_ids]
    return [base]


# ---- what a's calls may get --------------------------------------------------------------


def leaked(answer_text: str, sent: str, earlier: set[str], b: B) -> list[str]:
    """b's strings in an answer that the request did not carry itself; b's
    names (its schedule's and worker's) may also be ones a's earlier requests
    gave to a's own schedule or worker."""
    return sorted(
        m for m in b.markers if m in answer_text and m not in sent and not (m in b.names and m in earlier)
    )


def refused_items(response: Message) -> bool:
    """An OK answer whose every item is an error (BatchWrite's results): a refusal."""
    for f, value in response.ListFields():
        if f.is_repeated and f.message_type is not None and "error" in f.message_type.fields_by_name:
            return bool(value) and all(item.HasField("error") for item in value)
    return False


def strict(message: Message, b: B) -> set[str]:
    """The fields by which the request names one of b's runs, tokens or keys as its resource."""
    named: set[str] = set()
    for f, value in message.ListFields():
        if f.message_type is not None:
            if not f.message_type.full_name.startswith("google.protobuf."):
                for item in value if f.is_repeated else [value]:
                    named |= strict(item, b)
        elif f.name in STRICT_FIELDS and f.full_name not in FILTERS and value in b.markers:
            named.add(f.name)
    return named


def judge_grpc(namespace: str, message: Message, answer: Answer, earlier: set[str], b: B) -> str | None:
    """Why an answer to a's key breaks isolation, or None."""
    sent = text_format.MessageToString(message, as_utf8=True)
    if found := leaked(answer.text(), sent, earlier, b):
        return f"answered with b's {found}: {answer.text()[:300]}"
    if answer.code in BROKEN:
        return f"broke: {answer}"
    if namespace == "b":
        return None if answer.code == DENIED else f"expected PERMISSION_DENIED, got {answer}"
    named = strict(message, b)
    if answer.ok and named and not refused_items(answer.responses[0]):
        return f"accepted a request naming b's resource by {sorted(named)}: {answer.text()[:300]}"
    return None


def judge_http(
    namespace: str, named: set[str], sent: str, earlier: set[str], status: int, body: str, b: B
) -> str | None:
    if found := leaked(body, sent, earlier, b):
        return f"answered with b's {found}: {status} {body[:300]}"
    if status >= 500:
        return f"broke: {status} {body[:300]}"
    if namespace == "b":
        return None if status == 403 else f"expected 403, got {status} {body[:300]}"
    if status == 200 and named:
        return f"accepted a request naming b's resource by {sorted(named)}: {body[:300]}"
    return None


# ---- b's rows ------------------------------------------------------------------------------


Rows = dict[str, tuple[list[str], set[tuple[Any, ...]]]]


def b_rows(cluster: Cluster) -> Rows:
    """Every row of b in every table, by table with its columns: rows of
    namespace b, and rows with a uuid column naming one of b's runs (wherever
    they are: a run of another namespace whose parent is b's is b's business
    too). A new table with neither fails here until it says how its rows of b
    are found."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for row in cluster.sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
    ):
        columns.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
    b_runs = "(SELECT id FROM runs WHERE namespace = 'b')"
    rows: Rows = {}
    for table, cols in columns.items():
        if table in SERVICE_TABLES:
            continue
        where = [f"{c} = 'b'" for c, _ in cols if c == "namespace"]
        where += [f"{c} IN {b_runs}" for c, kind in cols if kind == "uuid"]
        assert where, (
            f"table {table}: no namespace or run column; say in namespace_rows.SERVICE_TABLES or here how b's rows are found"
        )
        kept = [c for c, _ in cols if (table, c) not in VOLATILE]
        found = cluster.sql(f"SELECT {', '.join(kept)} FROM {table} WHERE {' OR '.join(where)}")
        rows[table] = (kept, {tuple(_hashable(v) for v in r.values()) for r in found})
    return rows


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def row_changes(before: Rows, after: Rows) -> list[str]:
    out = []
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, ([], set()))[1], after.get(table, ([], set()))[1]
        gone, added = old - new, new - old
        if gone or added:
            out.append(
                f"{table}: {len(gone)} rows changed or gone {sorted(map(str, gone))[:2]}, "
                f"{len(added)} new {sorted(map(str, added))[:2]}"
            )
    return out


# ---- the test --------------------------------------------------------------------------------


@pytest.fixture
def world(
    cluster_factory: Any, tmp_path: Path
) -> tuple[Cluster, str, dict[str, dict[str, tuple[str, str]]], B]:
    http = f"127.0.0.1:{free_port()}"
    # A long lease: b's held attempt must not expire while a's keys try everything.
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": http}, lease_seconds=30)
    keys = {ns: {role: create_key(cluster, ns, role) for role in ROLES} for ns in ("a", "b")}
    work = tmp_path / "isolation"
    work.mkdir()
    b = make_b(cluster, keys, work)
    # a serves tasks of the same names, so a trigger in a reaches every check.
    mirror = wpb.RegisterWorkerRequest(
        namespace="a",
        worker_id="a-worker",
        tasks=[wpb.TaskDefinition(task_id=t, queue=q) for t, q in ISOLATION_TASKS.items()],
        slots=1,
    )
    wgrpc.WorkerServiceStub(cluster.channel(key=keys["a"]["worker"][0])).RegisterWorker(mirror, timeout=RPC)
    return cluster, f"http://{http}", keys, b


class Attack:
    """a's calls on b, and what went wrong."""

    def __init__(self, b: B) -> None:
        self.b = b
        self.problems: list[str] = []
        self.named: set[str] = set()  # b's names a's requests gave so far
        self.grpc_calls = self.http_calls = 0
        self.methods: set[str] = set()
        self.routes: set[str] = set()

    def sent(self, message: Message) -> str:
        text = text_format.MessageToString(message, as_utf8=True)
        self.named |= {n for n in self.b.names if n in text}
        return text

    def grpc(self, cluster: Cluster, keys: dict[str, tuple[str, str]]) -> None:
        """Every public method with each of a's keys, in namespace b and in a with b's ids."""
        for role, (secret, _) in keys.items():
            channel = cluster.channel(key=secret)
            for namespace in ("b", "a"):
                for method in public_methods():
                    try:
                        cases = [
                            request(method, t)
                            for t in targets(method.descriptor.input_type, self.b, namespace)
                        ]
                    except NoCase as exc:
                        self.problems.append(f"{method}: {exc}")
                        continue
                    for message in cases:
                        answer = call(channel, method, message)
                        self.grpc_calls += 1
                        earlier = set(self.named)
                        self.sent(message)
                        why = judge_grpc(namespace, message, answer, earlier, self.b)
                        if why is not None:
                            self.problems.append(
                                f"{method} by a's {role} key in namespace {namespace}: {why}"
                            )
                    self.methods.add(method.path)

    def http(self, base: str, keys: dict[str, tuple[str, str]]) -> None:
        """Every HTTP route with each of a's keys, in namespace b and in a with b's ids."""
        methods = {m.path: m for m in public_methods()}
        for role, (secret, _) in keys.items():
            with httpx.Client(base_url=base, headers=auth.headers(secret), timeout=RPC) as client:
                for namespace in ("b", "a"):
                    for route in HTTP_ROUTES:
                        method = methods[route.grpc.path]
                        for target in targets(method.descriptor.input_type, self.b, namespace):
                            message = request(method, target)
                            status, body = http_call(client, route, message)
                            self.http_calls += 1
                            earlier = set(self.named)
                            sent = self.sent(message)
                            why = judge_http(
                                namespace, strict(message, self.b), sent, earlier, status, body, self.b
                            )
                            if why is not None:
                                self.problems.append(
                                    f"{route.verb} {route.path} by a's {role} key in namespace {namespace}: {why}"
                                )
                        self.routes.add(f"{route.verb} {route.path}")


def http_call(client: httpx.Client, route: HttpRoute, message: Message) -> tuple[int, str]:
    """(status, body) of an HTTP call; of a stream what came within STREAM_WAIT."""
    verb, url, query, body = http_request(route, message)
    if not route.stream:
        answer = client.request(verb, url, params=query, json=body)
        return answer.status_code, answer.text
    text = ""
    try:
        with client.stream(verb, url, params=query, timeout=httpx.Timeout(RPC, read=STREAM_WAIT)) as answer:
            deadline = time.monotonic() + STREAM_WAIT
            for chunk in answer.iter_text():
                text += chunk
                if time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass  # no event came: nothing was read
    return answer.status_code, text


def test_a_keys_neither_read_nor_change_anything_of_b(world: Any) -> None:
    cluster, base, keys, b = world
    before = b_rows(cluster)
    assert all(
        before[t][1] for t in ("runs", "steps", "run_events", "wait_tokens", "schedules", "queues", "workers")
    )
    attack = Attack(b)
    attack.grpc(cluster, keys["a"])
    attack.http(base, keys["a"])
    changes = row_changes(before, b_rows(cluster))
    print(
        f"\nisolation: {attack.grpc_calls} gRPC calls over {len(attack.methods)} methods, "
        f"{attack.http_calls} HTTP calls over {len(attack.routes)} routes, each with a's admin, client "
        "and worker keys"
    )
    failures = attack.problems + [f"b's rows changed: {c}" for c in changes]
    assert attack.methods == {m.path for m in public_methods()}
    assert attack.routes == {f"{r.verb} {r.path}" for r in HTTP_ROUTES}
    assert not failures, f"{len(failures)} isolation failures:\n" + "\n".join(failures)
    assert_b_unharmed(cluster, keys["b"], b)


def assert_b_unharmed(cluster: Cluster, keys: dict[str, tuple[str, str]], b: B) -> None:
    """b's keys still work (its worker's too: it finishes the run), and its held
    run, released, ends with what its own worker recorded."""
    runs = rgrpc.RunServiceStub(cluster.channel(key=keys["client"][0]))
    held = b.runs[0]
    (b.held_path.parent / f"go-{held}").touch()
    done = runs.WaitRun(rpb.WaitRunRequest(namespace="b", run_id=held, timeout=seconds(30)), timeout=40)
    assert done.done and done.run.status == cpb.RUN_STATUS_COMPLETED, done.run
    assert json.loads(done.run.output.data) == {"held": {"remembered": b.secret}, "released": "released"}
    assert [s.name for s in done.run.steps] == ["remember", "hold"]
    assert all(s.attempt == 1 for s in done.run.steps)
    listed = runs.ListRuns(rpb.ListRunsRequest(namespace="b"), timeout=RPC).runs
    assert {r.id for r in listed} >= set(b.runs)
    admin = kgrpc.KeyServiceStub(cluster.channel(key=keys["admin"][0]))
    assert {k.id for k in admin.ListKeys(kpb.ListKeysRequest(namespace="b"), timeout=RPC).keys} >= set(
        b.key_ids
    )
