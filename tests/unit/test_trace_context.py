"""cairn.tracing: W3C traceparent parsing, validation and making."""

from __future__ import annotations

import pytest

from cairn import tracing

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_parses_into_its_fields() -> None:
    parsed = tracing.parse(VALID)
    assert parsed == tracing.TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert parsed.sampled
    assert str(parsed) == VALID
    assert tracing.is_valid(VALID)
    assert tracing.problem(VALID) is None
    assert tracing.trace_id_of(VALID) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_unsampled_traceparent_keeps_its_flags() -> None:
    value = VALID[:-2] + "00"
    parsed = tracing.parse(value)
    assert parsed is not None and not parsed.sampled
    assert tracing.valid_or_new(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "not a W3C traceparent"),
        ("garbage", "not a W3C traceparent"),
        (VALID.upper(), "not a W3C traceparent"),  # lower case only
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "not a W3C traceparent"),  # 31 hex
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", "not a W3C traceparent"),  # 15 hex
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "not a W3C traceparent"),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "not a W3C traceparent"),
        ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "trace id is all zeros"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", "span id is all zeros"),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"),
        (VALID + "-extra", "exactly four fields"),
        (VALID + "x" * 600, "at most 512 characters"),
    ],
)
def test_invalid_traceparents_are_refused_with_a_reason(value: str, why: str) -> None:
    problem = tracing.problem(value)
    assert problem is not None and why in problem
    assert tracing.parse(value) is None
    assert not tracing.is_valid(value)
    assert tracing.trace_id_of(value) == ""


def test_a_later_version_is_read_as_version_00_and_normalised() -> None:
    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
    assert tracing.is_valid(later)
    assert tracing.trace_id_of(later) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.valid_or_new(later) == VALID


def test_new_traceparents_are_valid_random_and_sampled() -> None:
    made = {str(tracing.new()) for _ in range(100)}
    assert len(made) == 100
    assert all(tracing.is_valid(v) and v.startswith("00-") and v.endswith("-01") for v in made)
    assert len({tracing.trace_id_of(v) for v in made}) == 100
    assert str(tracing.new(sampled=False)).endswith("-00")


def test_valid_or_new_keeps_a_valid_one_and_replaces_anything_else() -> None:
    assert tracing.valid_or_new(VALID) == VALID
    for value in ("", "nonsense", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"):
        made = tracing.valid_or_new(value)
        assert tracing.is_valid(made) and made != value
