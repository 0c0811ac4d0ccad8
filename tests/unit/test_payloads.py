"""cairn.payloads: the encodings (json/plain checked, binary/plain passed
through, proto/cairn.v1.ChildResults history's only), encode, decode and
validation, with messages that name the problem in our words, not the parser's."""

from __future__ import annotations

import math

import pytest

from cairn import payloads
from cairn.payloads import BINARY, CHILD_RESULTS, JSON, PayloadError, decode, encode_json, read, validate


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
    ("data", "where"),
    [
        (b"{", "line 1, column 2"),
        (b'{"a": 1,}', "line 1, column 9"),
        (b"nope", "line 1, column 1"),
        (b"{'a': 1}", "line 1, column 2"),
        (b'{"a": 1} extra', "line 1, column 10"),
        (b"   ", "line 1, column 4"),
    ],
)
def test_invalid_json_says_where_in_our_words(data: bytes, where: str) -> None:
    for check in (lambda: decode(data, JSON), lambda: validate(data, JSON)):
        with pytest.raises(PayloadError) as info:
            check()
        assert str(info.value) == f"not valid JSON ({where})"
        assert info.value.part == "data"


def test_invalid_json_on_a_later_line() -> None:
    with pytest.raises(PayloadError, match=r"^not valid JSON \(line 3, column 1\)$"):
        validate(b'{\n"a": 1,\n}', JSON)


@pytest.mark.parametrize("data", [b"NaN", b"[1, Infinity]", b'{"x": -Infinity}'])
def test_python_only_constants_are_not_json(data: bytes) -> None:
    with pytest.raises(PayloadError, match="not valid JSON .* is not a JSON value"):
        validate(data, JSON)
    with pytest.raises(PayloadError, match="not valid JSON"):
        decode(data, JSON)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(PayloadError, match="nested too deeply"):
        validate(b"[" * 100_000 + b"]" * 100_000, JSON)


def test_a_long_number_is_valid_json() -> None:
    validate(b"1" * 5000, JSON)  # checking converts no number: no digit limit


@pytest.mark.parametrize("encoding", ["application/msgpack", "JSON", "json", "text/plain", "binary"])
def test_unaccepted_encoding_is_named_with_the_accepted_ones(encoding: str) -> None:
    with pytest.raises(PayloadError) as info:
        validate(b"{}", encoding)
    message = str(info.value)
    assert info.value.part == "encoding"
    assert repr(encoding) in message
    assert f"accepted: {JSON!r} (the default when empty), {BINARY!r}" in message
    with pytest.raises(PayloadError):
        validate(b"", encoding)  # even an empty payload needs a known encoding
    with pytest.raises(PayloadError, match="cannot decode encoding"):
        decode(b"{}", encoding)


def test_child_results_are_history_s_only() -> None:
    with pytest.raises(PayloadError, match="written by history only") as info:
        validate(b"", CHILD_RESULTS)
    assert info.value.part == "encoding"
    assert BINARY in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\xff\x00 not utf-8, not json", b"{"])
def test_binary_is_passed_through_unchecked(data: bytes) -> None:
    validate(data, BINARY)
    validate(data, BINARY, required=True)  # empty bytes are a binary value
    assert decode(data, BINARY) == data
    assert read(data, BINARY) == data


@pytest.mark.parametrize("encoding", [JSON, ""])
def test_a_required_json_value_must_not_be_empty(encoding: str) -> None:
    with pytest.raises(PayloadError, match="empty: a value is required") as info:
        validate(b"", encoding, required=True)
    assert info.value.part == "data"
    validate(b"null", encoding, required=True)  # JSON null is the 4 bytes
    validate(b"0", encoding, required=True)
    with pytest.raises(PayloadError, match=r"not valid JSON \(line 1, column 2\)"):
        validate(b" ", encoding, required=True)


def test_read_describes_what_it_cannot_decode() -> None:
    assert read(b"abc", CHILD_RESULTS) == {"encoding": CHILD_RESULTS, "bytes": 3}
    assert read(b"{", JSON) == {"encoding": JSON, "bytes": 1}
    assert read(b'{"a":1}', "") == {"a": 1}


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)
    assert payloads.ENCODINGS == (JSON, BINARY, CHILD_RESULTS)
    assert payloads.ACCEPTED == (JSON, BINARY)


@pytest.mark.parametrize("value", [{1, 2}, object(), math.nan, {"x": math.inf}, b"bytes"])
def test_encode_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_json(value)
