"""A property-based fuzz of every public gRPC method (issue 14, must-show 4),
its requests built by hypothesis from the request descriptors
(services/frontend/routes.py SERVICES): every field type (strings: ids, UUIDs,
unicode, NUL, huge; integers at their limits; enums with unknown values;
nested messages; repeated fields, some very long; Struct values nested deep,
with NaN and infinity; Durations and Timestamps out of range; payload bytes
random or JSON text, malformed and huge), sometimes merged into a valid
request so the fuzz reaches past the first check, and sometimes bytes that are
no message at all. Each is sent with the session's admin key, and:

- no answer is INTERNAL, UNKNOWN or DATA_LOSS;
- no message holds a stack trace, a file path, a class name or SQL;
- a rejected request (any status but OK and DEADLINE_EXCEEDED; a BatchWrite
  whose every write was refused) changed no row count of its namespace in any
  table (found by namespace, or by a uuid column naming one of its runs);
- afterwards every service is healthy and serves a trigger and a read.

Each method is fuzzed in a namespace of its own, seeded with a registered
worker, a queued, an executing and a completed run, a wait token and a
schedule; a namespace about to fire a timer (an accepted request may set one)
is left for a fresh one, so the counts are never changed by history's own
work. CI runs EXAMPLES per method, deterministically; CAIRN_FUZZ_EXAMPLES=N runs
N per method, and CAIRN_FUZZ_SEED=S draws at random from seed S. Prints how many
inputs ran, and how they were answered."""

from __future__ import annotations

import collections
import os
import re
import secrets
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from fuzz_strategies import QUEUE, TASK, WORKER, Strategies, inputs
from generated_requests import Method, Target, names_field, public_methods
from google.protobuf import text_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from harness import Cluster, assert_clean, expect_rpc_error, health_check, json_payload, seconds
from hypothesis import HealthCheck, Phase, given, seed, settings
from namespace_rows import NamespaceRows

from cairn.limits import NAMESPACE_RE
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import schedule_service_pb2_grpc as sgrpc
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import wait_service_pb2_grpc as wsgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc

EXAMPLES = int(os.environ.get("CAIRN_FUZZ_EXAMPLES") or 25)  # per method
SEED = os.environ.get("CAIRN_FUZZ_SEED")
CALL_TIMEOUT = 1.5  # a call that waits (WaitRun, PollAttempt) longer is DEADLINE_EXCEEDED, not judged
STREAM_WAIT = 0.3
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
UNJUDGED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
# What an answer must not hold: a stack trace, a file path, a class name, SQL.
INTERNALS = [
    re.compile(r"Traceback|File \""),
    re.compile(r"[\w/.-]+\.py\b"),
    re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)*(?:Error|Exception|Violation|Warning)\b"),
    re.compile(r"\b(?:SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET|WHERE \w+ =|asyncpg|psycopg|pg_\w+)\b"),
    re.compile(r"<[\w.]+ object at 0x"),
]


# ---- the namespace of a method's fuzz ------------------------------------------------------


class Seeded:
    """A namespace with what the fuzzed requests may name: a registered worker
    serving TASK, a queued, an executing and a completed run, the executing
    attempt's token, a wait token, a schedule and a key. `fresh()` makes a
    new one."""

    def __init__(self, cluster: Cluster) -> None:
        channel = cluster.channel()
        self.runs = rgrpc.RunServiceStub(channel)
        self.workers = wgrpc.WorkerServiceStub(channel)
        self.waits = wsgrpc.WaitServiceStub(channel)
        self.schedules = sgrpc.ScheduleServiceStub(channel)
        self.keys = kgrpc.KeyServiceStub(channel)
        self.namespaces = 0
        self.fresh()

    def fresh(self) -> None:
        self.ns = f"fz-{secrets.token_hex(4)}"
        self.namespaces += 1
        task = wpb.TaskDefinition(task_id=TASK, queue=QUEUE)
        self.workers.RegisterWorker(
            wpb.RegisterWorkerRequest(namespace=self.ns, worker_id=WORKER, tasks=[task], slots=100),
            timeout=10,
        )
        completed, executing = self.trigger(), self.trigger()
        poll = wpb.PollAttemptRequest(namespace=self.ns, worker_id=WORKER, wait=seconds(5), max_attempts=2)
        assignments = {a.run_id: a for a in self.workers.PollAttempt(poll, timeout=10).assignments}
        done = assignments[completed]
        self.workers.FinishAttempt(
            wpb.FinishAttemptRequest(
                namespace=self.ns,
                run_id=completed,
                attempt=done.attempt,
                attempt_token=done.attempt_token,
                outcome=wpb.ATTEMPT_OUTCOME_COMPLETED,
                output=json_payload({"done": True}),
            ),
            timeout=10,
        )
        self.attempt = assignments[executing]
        self.run_ids = [self.trigger(), executing, completed]  # queued, executing, completed
        self.token = self.waits.CreateWaitToken(
            wspb.CreateWaitTokenRequest(namespace=self.ns, timeout=seconds(3600)), timeout=10
        ).token.id
        self.schedules.CreateSchedule(
            spb.CreateScheduleRequest(
                namespace=self.ns,
                schedule_id="fz-schedule",
                task_id=TASK,
                cron="0 0 1 1 *",
                payload=json_payload(1),
            ),
            timeout=10,
        )
        self.key_id = self.keys.CreateKey(
            kpb.CreateKeyRequest(namespace=self.ns, role=kpb.KEY_ROLE_CLIENT), timeout=10
        ).key.id

    def trigger(self) -> str:
        request = rpb.TriggerRunRequest(namespace=self.ns, task_id=TASK, payload=json_payload({"n": 1}))
        return str(self.runs.TriggerRun(request, timeout=10).run.id)

    def executing(self, rows: NamespaceRows) -> None:
        """An attempt to write to, live: when an accepted request ended the
        last one, a new run's (or a fresh namespace's, when the fuzz filled or
        paused the queue)."""
        found = rows.fetch("SELECT status, attempt_count FROM runs WHERE id = $1::uuid", self.attempt.run_id)
        if found and found[0]["status"] == "executing" and found[0]["attempt_count"] == self.attempt.attempt:
            return
        try:
            self.trigger()
            poll = wpb.PollAttemptRequest(
                namespace=self.ns, worker_id=WORKER, wait=seconds(1), max_attempts=1
            )
            self.attempt = self.workers.PollAttempt(poll, timeout=10).assignments[0]
        except (grpc.RpcError, IndexError):
            self.fresh()

    def runs_now(self) -> list[str]:
        """A queued, the executing and a completed run."""
        return [self.run_ids[0], self.attempt.run_id, self.run_ids[2]]

    @property
    def target(self) -> Target:
        return Target(
            namespace=self.ns,
            run_id=self.attempt.run_id,
            attempt=self.attempt.attempt,
            attempt_token=self.attempt.attempt_token,
            position=len(self.attempt.steps),
            token_id=self.token,
            schedule_id="fz-schedule",
            queue=QUEUE,
            task_id=TASK,
            worker_id=WORKER,
            key_id=self.key_id,
        )


# ---- one input --------------------------------------------------------------------------------


def namespaces_of(message: Any) -> set[str]:
    """Every namespace a request names (top level and nested), that a refused
    request must not have written to."""
    found: set[str] = set()
    if not isinstance(message, Message):
        return found
    for f, value in message.ListFields():
        if f.name == "namespace" and isinstance(value, str) and "\x00" not in value and len(value) <= 200:
            found.add(value)
        elif f.message_type is not None and not f.message_type.full_name.startswith("google.protobuf."):
            for item in value if f.is_repeated else [value]:
                found |= namespaces_of(item)
    return found


def pin_namespace(message: Any, namespace: str) -> Any:
    """A request whose own namespace is empty or a valid name is sent in the
    method's namespace (an invalid one is kept, to be refused); the items of a
    batch keep theirs."""
    if isinstance(message, Message) and (not message.namespace or NAMESPACE_RE.fullmatch(message.namespace)):
        message.namespace = namespace
    return message


def describe(message: Any) -> str:
    if isinstance(message, bytes):
        return f"bytes {message[:80].hex()}... ({len(message)} bytes)"
    text = text_format.MessageToString(message, as_utf8=True, as_one_line=True)
    text = re.sub(r"(x{40})x+", lambda m: f"{m.group(1)}...", text)
    return f"{type(message).__name__}({text[:600]})"


def internals(details: str) -> list[str]:
    assert_clean(details)
    return [m.group(0) for p in INTERNALS if (m := p.search(details))]


def all_writes_refused(response: Message) -> bool:
    """A BatchWrite answered OK whose every write was refused."""
    results = getattr(response, "results", None)
    return bool(results) and all(r.WhichOneof("result") == "error" for r in results)


class Fuzz:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.channel = cluster.channel()
        self.seeded = Seeded(cluster)
        self.rows = NamespaceRows(cluster)
        self.strategies = Strategies(self.seeded)
        self.ran: collections.Counter[str] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.failures: dict[str, str] = {}  # one reproducer per kind of failure

    def send(self, method: Method, message: Any) -> tuple[grpc.StatusCode, str, list[Message]]:
        response_class = GetMessageClass(method.descriptor.output_type)
        kind = self.channel.unary_stream if method.stream else self.channel.unary_unary
        stub = kind(
            method.path,
            request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            if not method.stream:
                return grpc.StatusCode.OK, "", [stub(message, timeout=CALL_TIMEOUT)]
            stream = stub(message, timeout=STREAM_WAIT)
            try:
                return grpc.StatusCode.OK, "", [next(stream)]
            except StopIteration:
                return grpc.StatusCode.OK, "", []
            finally:
                stream.cancel()
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", []

    def one(self, method: Method, message: Any) -> None:
        if self.rows.busy([self.seeded.ns]):
            self.seeded.fresh()
        if names_field(method.descriptor.input_type, "attempt_token"):
            self.seeded.executing(self.rows)
        message = pin_namespace(message, self.seeded.ns)
        counted = {self.seeded.ns} | namespaces_of(message)
        before = self.rows.counts(counted)
        code, details, responses = self.send(method, message)
        self.ran[str(method)] += 1
        self.codes[code.name] += 1
        problems = []
        if code in BROKEN:
            problems.append(f"{code.name}: {details[:200]}")
        if found := internals(details):
            problems.append(f"internals {found} in: {details[:200]}")
        rejected = code not in UNJUDGED or (code == grpc.StatusCode.OK and all_writes_refused(responses[0]))
        if rejected:
            after = self.rows.counts(counted)
            if after != before:
                changed = {t: (before[t], after[t]) for t in after if after[t] != before[t]}
                problems.append(f"refused ({code.name}: {details[:120]}) but rows changed {changed}")
        for problem in problems:
            kind = f"{method} {problem[:60]}"
            self.failures.setdefault(kind, f"{method}: {problem}\n    reproducer: {describe(message)}")

    def method(self, method: Method) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=SEED is None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(message=inputs(self.strategies, method))
        def fuzz(message: Any) -> None:
            self.one(method, message)

        if SEED is not None:
            fuzz = seed(int(SEED))(fuzz)
        fuzz()


@pytest.mark.timeout(max(300, EXAMPLES * 3))
@pytest.mark.cluster_options(lease_seconds=600, env={"CAIRN_KEY_RATE": "0"})
def test_fuzz_every_public_method(cluster: Cluster) -> None:
    fuzz = Fuzz(cluster)
    try:
        for method in public_methods():
            fuzz.method(method)
    finally:
        fuzz.rows.close()
    total = sum(fuzz.ran.values())
    print(
        f"\nfuzz: {total} inputs over {len(fuzz.ran)} methods ({EXAMPLES} per method; "
        f"{fuzz.seeded.namespaces} namespaces); answers: "
        + ", ".join(f"{code} {n}" for code, n in fuzz.codes.most_common())
    )
    for name, n in sorted(fuzz.ran.items()):
        print(f"  {n:5d}  {name}")
    for name in ("frontend", "history", "matching"):
        serving, detail = health_check(cluster.services[name].address, timeout=5)
        assert serving and cluster.services[name].running, f"{name} after the fuzz: {detail}"
    fuzz.seeded.fresh()  # the fuzz may have filled or paused the last namespace's queue
    runs = rgrpc.RunServiceStub(cluster.channel())
    trigger = rpb.TriggerRunRequest(namespace=fuzz.seeded.ns, task_id=TASK, payload=json_payload("after"))
    run = runs.TriggerRun(trigger, timeout=10).run
    assert (
        runs.GetRun(rpb.GetRunRequest(namespace=fuzz.seeded.ns, run_id=run.id), timeout=10).run.id == run.id
    )
    assert set(fuzz.ran) == {str(m) for m in public_methods()}
    assert not fuzz.failures, f"{len(fuzz.failures)} kinds of failure:\n" + "\n".join(fuzz.failures.values())


@pytest.mark.cluster_options(lease_seconds=600)
def test_times_out_of_range_are_refused_naming_the_field(cluster: Cluster) -> None:
    """What the fuzz found answering INTERNAL (history could not make a datetime
    of them): a Timestamp before 1970, after 9999 or with nanos outside a
    second, as ListRuns' created_after, a log line's at, a wait's timeout_at or
    a sleep's until, is INVALID_ARGUMENT naming the field, and writes nothing."""
    seeded, rows = Seeded(cluster), NamespaceRows(cluster)
    runs, workers = seeded.runs, seeded.workers
    try:
        for t in (
            Timestamp(nanos=-1),
            Timestamp(nanos=10**9),
            Timestamp(seconds=253_402_300_800),
            Timestamp(seconds=-1),
        ):
            a = seeded.attempt
            ref = {
                "namespace": seeded.ns,
                "run_id": a.run_id,
                "attempt": a.attempt,
                "attempt_token": a.attempt_token,
            }
            suspend = {**ref, "outcome": wpb.ATTEMPT_OUTCOME_SUSPENDED}
            event = wpb.EventWait(name="e")
            calls: list[tuple[Callable[[], Any], str]] = [
                (
                    lambda: runs.ListRuns(
                        rpb.ListRunsRequest(namespace=seeded.ns, created_after=t), timeout=10
                    ),
                    "created_after",
                ),
                (
                    lambda: runs.ListRuns(
                        rpb.ListRunsRequest(namespace=seeded.ns, created_before=t), timeout=10
                    ),
                    "created_before",
                ),
                (
                    lambda: workers.AppendRunOutput(
                        wpb.AppendRunOutputRequest(
                            **ref, outputs=[wpb.RunOutput(log=cpb.LogLine(level="INFO", at=t))]
                        ),
                        timeout=10,
                    ),
                    "outputs[0].log.at",
                ),
                (
                    lambda: workers.FinishAttempt(
                        wpb.FinishAttemptRequest(
                            **suspend, wait=wpb.WaitSpec(name="w", timeout_at=t, event=event)
                        ),
                        timeout=10,
                    ),
                    "wait.timeout_at",
                ),
                (
                    lambda: workers.FinishAttempt(
                        wpb.FinishAttemptRequest(
                            **suspend, wait=wpb.WaitSpec(name="w", sleep=wpb.SleepWait(until=t))
                        ),
                        timeout=10,
                    ),
                    "wait.sleep.until",
                ),
            ]
            for call, field in calls:
                before = rows.counts([seeded.ns])
                expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, field)
                assert rows.counts([seeded.ns]) == before, field
    finally:
        rows.close()


def test_a_nul_in_a_tag_is_refused_naming_the_field(cluster: Cluster) -> None:
    """What the fuzz found answering INTERNAL (PostgreSQL refused the NUL in
    runs.tags): a tag holding a NUL character, in a trigger, a batch item or a
    child of a suspension, is INVALID_ARGUMENT naming the tag, and writes nothing."""
    seeded, rows = Seeded(cluster), NamespaceRows(cluster)
    a, runs = seeded.attempt, seeded.runs
    options = cpb.TriggerOptions(tags=["ok", "a\x00b"])
    trigger = rpb.TriggerRunRequest(
        namespace=seeded.ns, task_id=TASK, payload=json_payload(1), options=options
    )
    child = wpb.ChildRun(task_id=TASK, payload=json_payload(1), options=options)
    suspend = wpb.FinishAttemptRequest(
        namespace=seeded.ns,
        run_id=a.run_id,
        attempt=a.attempt,
        attempt_token=a.attempt_token,
        outcome=wpb.ATTEMPT_OUTCOME_SUSPENDED,
        wait=wpb.WaitSpec(name="children", children=wpb.ChildrenWait(runs=[child])),
    )
    calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: runs.TriggerRun(trigger, timeout=10), "options.tags[1]"),
        (
            lambda: runs.BatchTriggerRuns(
                rpb.BatchTriggerRunsRequest(namespace=seeded.ns, runs=[trigger]), timeout=10
            ),
            "runs[0].options.tags[1]",
        ),
        (lambda: seeded.workers.FinishAttempt(suspend, timeout=10), "wait.children.runs[0].options.tags[1]"),
    ]
    try:
        for call, field in calls:
            before = rows.counts([seeded.ns])
            expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, field, "NUL")
            assert rows.counts([seeded.ns]) == before, field
    finally:
        rows.close()
