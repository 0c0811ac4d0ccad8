"""Limits of the worker protocol that the SDK, the frontend and matching share."""

from __future__ import annotations

MAX_POLL_ATTEMPTS = 100  # attempts handed over by one PollAttempt
DEFAULT_POLL_WAIT = 20.0  # seconds a PollAttempt waits for work when it names no wait
MAX_WAIT = 60.0  # seconds any long poll (PollAttempt, WaitRun) may wait
COALESCED_BATCH = 256  # items of one coalesced batch call (cairn.coalesce)
