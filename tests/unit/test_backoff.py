"""cairn.backoff: the retry delay formula, jitter bounds, validation, attempts left."""

from __future__ import annotations

import math
import random

import pytest

from cairn.backoff import (
    DEFAULT_FACTOR,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_TIMEOUT,
    DEFAULT_MIN_TIMEOUT,
    RetrySettings,
    backoff_seconds,
    has_attempts_left,
)


def test_defaults() -> None:
    s = RetrySettings()
    assert (s.max_attempts, s.factor, s.min_timeout, s.max_timeout, s.jitter) == (
        DEFAULT_MAX_ATTEMPTS,
        DEFAULT_FACTOR,
        DEFAULT_MIN_TIMEOUT,
        DEFAULT_MAX_TIMEOUT,
        False,
    )


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (6, 10.0), (50, 10.0)]
)
def test_exponential_then_capped(n: int, expected: float) -> None:
    s = RetrySettings(max_attempts=100, factor=2, min_timeout=1.0, max_timeout=10.0)
    assert backoff_seconds(s, n) == pytest.approx(expected)


@pytest.mark.parametrize("factor", [1.0, 1.5, 3.0])
@pytest.mark.parametrize("min_timeout", [0.0, 0.25, 2.0])
def test_formula(factor: float, min_timeout: float) -> None:
    s = RetrySettings(max_attempts=20, factor=factor, min_timeout=min_timeout, max_timeout=30.0)
    for n in range(1, 20):
        assert backoff_seconds(s, n) == pytest.approx(min(30.0, min_timeout * factor ** (n - 1)))


def test_factor_one_is_constant() -> None:
    s = RetrySettings(factor=1, min_timeout=3.0, max_timeout=60.0)
    assert {backoff_seconds(s, n) for n in range(1, 10)} == {3.0}


def test_huge_attempt_number_stays_capped() -> None:
    s = RetrySettings(factor=10, min_timeout=1.0, max_timeout=5.0)
    delay = backoff_seconds(s, 300)
    assert delay == 5.0 and math.isfinite(delay)


def test_float_overflow_is_capped() -> None:
    s = RetrySettings(max_attempts=5000, factor=2.0, min_timeout=1.0, max_timeout=10.0)
    assert backoff_seconds(s, 1100) == 10.0


def test_jitter_stays_within_half_and_full_bound() -> None:
    s = RetrySettings(max_attempts=10, factor=2, min_timeout=1.0, max_timeout=10.0, jitter=True)
    rand = random.Random(1234)
    for n in range(1, 10):
        bound = min(10.0, 2.0 ** (n - 1))
        delays = [backoff_seconds(s, n, rand) for _ in range(200)]
        assert all(bound * 0.5 <= d <= bound for d in delays), (n, min(delays), max(delays))
        assert len(set(delays)) > 1, "jitter must actually vary the delay"
        assert min(delays) < bound * 0.6 and max(delays) > bound * 0.9, "jitter spans its range"


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    s = RetrySettings(jitter=True, min_timeout=2.0, max_timeout=100.0)
    a = [backoff_seconds(s, n, random.Random(7)) for n in range(1, 6)]
    b = [backoff_seconds(s, n, random.Random(7)) for n in range(1, 6)]
    assert a == b


def test_without_jitter_the_random_is_not_used() -> None:
    class Exploding(random.Random):
        def uniform(self, a: float, b: float) -> float:
            raise AssertionError("uniform called without jitter")

    assert backoff_seconds(RetrySettings(min_timeout=1.5), 1, Exploding()) == 1.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "retry.max_attempts"),
        ({"max_attempts": -3}, "retry.max_attempts"),
        ({"factor": 0.5}, "retry.factor"),
        ({"min_timeout": -1.0}, "retry.min_timeout"),
        ({"min_timeout": 5.0, "max_timeout": 1.0}, "retry.max_timeout"),
    ],
)
def test_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as info:
        RetrySettings(**kwargs)
    value = next(iter(kwargs.values())) if len(kwargs) == 1 else kwargs["max_timeout"]
    assert str(value) in str(info.value), "the message shows the offending value"


@pytest.mark.parametrize("n", [0, -1])
def test_failed_attempt_must_be_positive(n: int) -> None:
    with pytest.raises(ValueError, match="failed_attempt"):
        backoff_seconds(RetrySettings(), n)


def test_edge_values_are_valid() -> None:
    s = RetrySettings(max_attempts=1, factor=1, min_timeout=0.0, max_timeout=0.0)
    assert backoff_seconds(s, 1) == 0.0


def test_has_attempts_left() -> None:
    s = RetrySettings(max_attempts=3)
    assert has_attempts_left(s, 1)
    assert has_attempts_left(s, 2)
    assert not has_attempts_left(s, 3)
    assert not has_attempts_left(s, 4)
    assert not has_attempts_left(RetrySettings(max_attempts=1), 1)


def test_settings_are_immutable() -> None:
    s = RetrySettings()
    with pytest.raises(AttributeError):
        s.max_attempts = 5  # type: ignore[misc]
