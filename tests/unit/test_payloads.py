"""cairn.payloads: json/plain encode, decode and validation, with messages that
name the problem."""

from __future__ import annotations

import math

import pytest

from cairn import payloads
from cairn.payloads import JSON, PayloadError, decode, encode_json, validate


@pytest.mark.parametrize(
    "value",
    [
        {"videoUrl": "https://example.com/v.mp4", "n": 3, "ok": True, "tags": ["a", "b"]},
        [1, 2.5, None, "x"],
        "plain string",
        42,
        0,
        False,
        None,
        {"nested": {"deep": [{"k": "v"}]}},
        {"unicode": "żółć 🎉"},
    ],
)
def test_round_trip(value: object) -> None:
    data = encode_json(value)
    assert isinstance(data, bytes)
    assert decode(data, JSON) == value
    validate(data, JSON)


def test_encoding_is_compact_utf8() -> None:
    assert encode_json({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()


def test_decode_good_json() -> None:
    assert decode(b'{"x": [1, 2, {"y": null}]}', "json/plain") == {"x": [1, 2, {"y": None}]}
    assert decode(b"  7 ", JSON) == 7


@pytest.mark.parametrize("encoding", [JSON, ""])
def test_empty_bytes_are_none(encoding: str) -> None:
    assert decode(b"", encoding) is None
    validate(b"", encoding)


def test_empty_encoding_means_json() -> None:
    assert decode(b'{"a":1}', "") == {"a": 1}


def test_invalid_utf8_names_the_byte() -> None:
    with pytest.raises(PayloadError, match=r"not valid UTF-8 at byte 5"):
        decode(b'{"a":\xff}', JSON)
    with pytest.raises(PayloadError, match="UTF-8"):
        validate(b"\xc3\x28", JSON)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b'{"a": 1,}', "not valid JSON"),
        (b"nope", "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": 1} extra', "Extra data"),
    ],
)
def test_invalid_json_names_the_problem(data: bytes, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment) as info:
        decode(data, JSON)
    assert "line 1 column" in str(info.value), "the message says where"


def test_invalid_json_on_a_later_line() -> None:
    with pytest.raises(PayloadError, match="line 3 column"):
        validate(b'{\n"a": 1,\n}', JSON)


@pytest.mark.parametrize("encoding", ["application/msgpack", "JSON", "json", "text/plain"])
def test_unsupported_encoding(encoding: str) -> None:
    with pytest.raises(PayloadError, match="unsupported encoding") as info:
        decode(b"{}", encoding)
    assert repr(encoding) in str(info.value)
    assert JSON in str(info.value), "the message lists the supported encodings"
    with pytest.raises(PayloadError):
        validate(b"", encoding)  # even an empty payload needs a known encoding


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)
    assert payloads.ENCODINGS == (JSON,)


@pytest.mark.parametrize("value", [{1, 2}, object(), math.nan, {"x": math.inf}, b"bytes"])
def test_encode_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_json(value)
