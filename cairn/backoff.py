"""The retry backoff both history (task retries) and the worker SDK (step
retries in place) compute, so the two can never disagree."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_FACTOR = 2.0
DEFAULT_MIN_TIMEOUT = 1.0
DEFAULT_MAX_TIMEOUT = 60.0


@dataclass(frozen=True)
class RetrySettings:
    """A retry policy with defaults filled in; timeouts in seconds."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    factor: float = DEFAULT_FACTOR
    min_timeout: float = DEFAULT_MIN_TIMEOUT
    max_timeout: float = DEFAULT_MAX_TIMEOUT
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"retry.max_attempts must be at least 1, got {self.max_attempts}")
        if self.factor < 1:
            raise ValueError(f"retry.factor must be at least 1, got {self.factor}")
        if self.min_timeout < 0:
            raise ValueError(f"retry.min_timeout must not be negative, got {self.min_timeout}")
        if self.max_timeout < self.min_timeout:
            raise ValueError(
                f"retry.max_timeout ({self.max_timeout}) must not be below "
                f"retry.min_timeout ({self.min_timeout})"
            )


def backoff_seconds(settings: RetrySettings, failed_attempt: int, rand: random.Random | None = None) -> float:
    """The wait after attempt number `failed_attempt` (1-based) failed:
    min(max_timeout, min_timeout * factor**(n-1)); with jitter, scaled by a
    uniform factor in [0.5, 1] so retries spread out but never exceed the bound."""
    if failed_attempt < 1:
        raise ValueError(f"failed_attempt must be at least 1, got {failed_attempt}")
    try:
        grown = settings.min_timeout * settings.factor ** (failed_attempt - 1)
    except OverflowError:  # a float factor after ~1000 attempts: far past any cap
        grown = settings.max_timeout
    delay = min(settings.max_timeout, grown)
    if settings.jitter:
        delay *= (rand or random).uniform(0.5, 1.0)
    return delay


def has_attempts_left(settings: RetrySettings, failed_attempt: int) -> bool:
    """Whether another attempt may follow attempt `failed_attempt`."""
    return failed_attempt < settings.max_attempts
