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
import json
import math
import os
import re
import secrets
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from generated_requests import Method, Target, names_field, public_methods, request
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, EncodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from harness import Cluster, assert_clean, expect_rpc_error, health_check, json_payload, seconds
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
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

EXAMPLES = int(os.environ.get("CAIRN_FUZZ_EXAMPLES") or 40)  # per method
SEED = os.environ.get("CAIRN_FUZZ_SEED")
CALL_TIMEOUT = 1.5  # a call that waits (WaitRun, PollAttempt) longer is DEADLINE_EXCEEDED, not judged
STREAM_WAIT = 0.3
MAX_DEPTH = 5  # of nested messages
MAX_BYTES = 5 * 1024 * 1024  # of a message (the frontend takes at most 4 MiB): a bound on memory
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
UNJUDGED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
TASK, QUEUE, WORKER = "fz-task", "fz-queue", "fz-worker"
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


# ---- strategies from the descriptors ------------------------------------------------------

INT_LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
SMALL = [0, 1, 2, 3, -1, 100, 999, 1000, 1001, 5000, 10_000, 86_400]
HUGE_LENGTHS = [65, 129, 201, 257, 1001, 4097, 20_000, 70_000]
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,24}", fullmatch=True)
TEXT = st.one_of(
    st.text(max_size=40),
    IDS,
    st.uuids().map(str),
    st.just(""),
    st.text(max_size=10).map(lambda s: f"{s}\x00{s}"),
    st.text(alphabet=st.characters(min_codepoint=0x80, codec="utf-8"), min_size=1, max_size=12),
    st.sampled_from(HUGE_LENGTHS).map(lambda n: "x" * n),
    st.sampled_from(["*", " ", "../etc", "a b", "default", "%s", "{}", "'; DROP TABLE runs; --"]),
)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


PAYLOAD_DATA = st.one_of(
    JSON_VALUES.map(_json_bytes),
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"NaN",
            b"\x00",
            b'{"a":',
            b"[" * 1000 + b"]" * 1000,
            b"1" * 4301,
            b'"\\u0000"',
            b"\xff\xfe",
            b'{"a": 1, "a": 2}',
        ]
    ),
    st.sampled_from([4 * 1024 * 1024, 4 * 1024 * 1024 + 1]).map(lambda n: b"0" * n),
)
ENCODINGS = st.one_of(
    st.sampled_from(
        ["json/plain", "", "binary", "proto/cairn.v1.ChildResults", "JSON/PLAIN", "json/plain\x00"]
    ),
    TEXT,
)


def struct_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
        st.integers(1, 60).map(_nested),
        st.sampled_from(
            [
                {"x": math.nan},
                {"x": math.inf},
                {"x": "a\x00b"},
                {"a\x00b": 1},
                {"big": "x" * 5000},
                {f"k{i}": i for i in range(600)},
            ]
        ),
    )


def _struct(value: Any) -> Struct:
    s = Struct()
    s.update(value)
    return s


SECONDS = st.one_of(
    st.sampled_from(
        [0, 1, -1, 59, 60, 61, 86_400 * 366, 2_147_484, 315_576_000_000, 315_576_000_001, 2**63 - 1, -(2**63)]
    ),
    st.integers(-10, 120),
    st.sampled_from([-62_135_596_801, -62_135_596_800, 253_402_300_799, 253_402_300_800, 1_800_000_000]),
)
NANOS = st.one_of(st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)]), st.just(0))
TIME_PAIRS = st.tuples(SECONDS, NANOS)
GOOD_INTS = {"attempt"}  # names whose good values are numbers; the others' are strings


class Strategies:
    """Strategies of the public request messages, whose well-formed values come
    from the current seeded namespace (read when a value is drawn)."""

    def __init__(self, seeded: Seeded) -> None:
        self.s = seeded
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}
        s = seeded
        self.good: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
            "namespace": lambda: st.just(None).map(lambda _: s.ns),
            "run_id": lambda: st.integers(0, 2).map(lambda i: s.runs_now()[i]),
            "parent_run_id": lambda: st.integers(0, 2).map(lambda i: s.runs_now()[i]),
            "attempt_token": lambda: st.just(None).map(lambda _: s.attempt.attempt_token),
            "attempt": lambda: st.just(None).map(lambda _: s.attempt.attempt),
            "token_id": lambda: st.just(None).map(lambda _: s.token),
            "id": lambda: st.just(None).map(lambda _: s.key_id),
            "task_id": lambda: st.just(TASK),
            "task_ids": lambda: st.just(TASK),
            "queue": lambda: st.just(QUEUE),
            "worker_id": lambda: st.just(WORKER),
            "schedule_id": lambda: st.just("fz-schedule"),
            "name": lambda: st.sampled_from([QUEUE, "step", "event"]),
            "level": lambda: st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "info"]),
            "cron": lambda: st.sampled_from(
                ["0 0 1 1 *", "* * * * *", "*/5 * * * * *", "61 * * * *", "@hourly"]
            ),
            "timezone": lambda: st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", "+01:00"]),
            "stream": lambda: st.sampled_from(["out", "tokens"]),
            "traceparent": lambda: st.sampled_from(
                [
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-" + "0" * 32 + "-" + "0" * 16 + "-00",
                ]
            ),
            "encoding": lambda: ENCODINGS,
        }

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            self._cache[key] = st.deferred(lambda: self._message(descriptor, depth))
        return self._cache[key]

    def _message(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = GetMessageClass(descriptor)
        if depth >= MAX_DEPTH:
            return st.just(None).map(lambda _: cls())
        fields = {f.name: self.field(f, depth) for f in descriptor.fields}
        return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))

    def field(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        one = self.single(f, depth)
        if not f.is_repeated:
            return one
        many = st.tuples(one, st.sampled_from([100, 1001, 5000])).map(_repeated)
        return st.one_of(st.lists(one, max_size=3), st.lists(one, max_size=3), many)

    def single(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        good = self.good.get(f.name)
        if good is not None and (f.type == FieldDescriptor.TYPE_STRING) != (f.name not in GOOD_INTS):
            good = None  # the name's good values are of another type (LogLine.id is a number)
        if f.message_type is not None:
            name = f.message_type.full_name
            if name == "google.protobuf.Duration" or name == "google.protobuf.Timestamp":
                cls = GetMessageClass(f.message_type)
                return st.one_of(TIME_PAIRS, st.tuples(st.integers(0, 90), st.just(0))).map(
                    lambda pair, cls=cls: _time(cls, pair)
                )
            if name == "google.protobuf.Struct":
                return struct_values().map(_struct)
            if name == "cairn.v1.Payload":
                return st.one_of(
                    st.builds(lambda d, e: cpb.Payload(data=d, encoding=e), PAYLOAD_DATA, ENCODINGS),
                    JSON_VALUES.filter(_finite).map(json_payload),
                )
            return self.message(f.message_type, depth + 1)
        if f.type == FieldDescriptor.TYPE_STRING:
            return st.one_of(good(), good(), TEXT) if good else TEXT
        if f.type == FieldDescriptor.TYPE_BYTES:
            return PAYLOAD_DATA
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.floats(
                allow_nan=True, allow_infinity=True, width=64 if f.type == FieldDescriptor.TYPE_DOUBLE else 32
            )
        if f.type == FieldDescriptor.TYPE_ENUM:
            numbers = [v.number for v in f.enum_type.values]
            return st.one_of(
                st.sampled_from(numbers),
                st.sampled_from(numbers),
                st.integers(-3, 60),
                st.sampled_from([2**31 - 1, -(2**31)]),
            )
        low, high = INT_LIMITS[f.type]
        ints = st.one_of(
            st.sampled_from([v for v in SMALL if low <= v <= high] + [low, high, low + 1, high - 1]),
            st.integers(low, high),
        )
        return st.one_of(good(), good(), ints) if good else ints


def _finite(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def _time(cls: Any, pair: tuple[int, int]) -> Any:
    t = cls()
    t.seconds, t.nanos = pair
    return t


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return value.ByteSize()
    return len(value) if isinstance(value, str | bytes) else 8


def _repeated(pair: tuple[Any, int]) -> list[Any]:
    """n copies of a value, fewer when they would pass MAX_BYTES."""
    value, n = pair
    return [value] * max(1, min(n, MAX_BYTES // max(1, _size(value))))


def _build(cls: Any, values: dict[str, Any]) -> Message:
    """The message of these field values; past MAX_BYTES, its largest fields
    are left out until it is not (so nesting cannot multiply sizes)."""
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        try:
            if field.is_repeated:
                getattr(message, name).extend(value)
            elif field.message_type is not None:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        except (DecodeError, EncodeError):  # nested past protobuf's depth limit: RAW sends those
            message.ClearField(name)
    while message.ByteSize() > MAX_BYTES:
        largest = max(message.ListFields(), key=lambda fv: _size_of_field(fv[0], fv[1]))[0]
        message.ClearField(largest.name)
    return message


def _size_of_field(field: FieldDescriptor, value: Any) -> int:
    return sum(_size(v) for v in value) if field.is_repeated else _size(value)


def deep_bytes(depth: int) -> bytes:
    """A message nested `depth` levels in field 5 (wire type 2) of each level:
    past protobuf's depth limit for any request with a message field 5."""
    data = b""
    for _ in range(depth):
        data = b"\x2a" + _varint(len(data)) + data
    return data


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


RAW = st.one_of(st.binary(max_size=200), st.integers(90, 400).map(deep_bytes))


def inputs(strategies: Strategies, method: Method) -> st.SearchStrategy[Any]:
    """A request of the method: fuzzed whole, a valid one with fuzzed fields
    merged in, or bytes that may be no message at all."""
    fuzzed = strategies.message(method.descriptor.input_type)

    def merged(part: Message) -> Message:
        base = request(method, strategies.s.target)
        try:
            base.MergeFrom(part)
        except (DecodeError, EncodeError):  # nested past protobuf's depth limit together
            return part
        return base

    return st.one_of(fuzzed, fuzzed, fuzzed.map(merged), fuzzed.map(merged), RAW)


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
