"""Hypothesis strategies that build the public API's requests from their
descriptors (test_fuzz_generated.py): every field type, with values at and past
the limits, malformed bytes and deep nesting."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from generated_requests import Method, request
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, EncodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.struct_pb2 import Struct
from harness import json_payload
from hypothesis import strategies as st

from cairn.v1 import common_pb2 as cpb

TASK, QUEUE, WORKER = "fz-task", "fz-queue", "fz-worker"  # what the fuzz's namespace holds
MAX_DEPTH = 5  # of nested messages
MAX_BYTES = 5 * 1024 * 1024  # of a message (the frontend takes at most 4 MiB): a bound on memory


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

    def __init__(self, seeded: Any) -> None:  # test_fuzz_generated.Seeded
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
        data = b"\x2a" + varint(len(data)) + data
    return data


def varint(n: int) -> bytes:
    """n as a protobuf varint (for messages written byte by byte)."""
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
