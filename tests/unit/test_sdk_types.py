"""The SDK's status enums name every status the protocol defines, so a run,
attempt, step or token read from the server never loses its status."""

from __future__ import annotations

import pytest

from cairn.statuses import ATTEMPT_STATUS_NAMES, RUN_STATUS_NAMES, STEP_STATUS_NAMES, WAIT_TOKEN_STATUS_NAMES
from worker_sdk import AttemptStatus, RunStatus, StepStatus, WaitTokenStatus


@pytest.mark.parametrize(
    ("names", "enum"),
    [
        (RUN_STATUS_NAMES, RunStatus),
        (ATTEMPT_STATUS_NAMES, AttemptStatus),
        (STEP_STATUS_NAMES, StepStatus),
        (WAIT_TOKEN_STATUS_NAMES, WaitTokenStatus),
    ],
)
def test_every_protocol_status_has_an_sdk_member(names: dict[int, str], enum: type) -> None:
    assert set(names.values()) == {m.value for m in enum} - {""}
