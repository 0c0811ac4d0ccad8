"""Lowercase status names, as the CLI, the JSON output and the database use them,
made once from the protocol's enums (RUN_STATUS_FAILED -> "failed"). The
*_BY_NAME maps give the enum values, typed as the generated stubs type them."""

from __future__ import annotations

from typing import cast

from cairn.v1 import common_pb2 as pb
from cairn.v1 import wait_service_pb2 as wpb
from cairn.v1 import worker_service_pb2 as wkpb

RUN_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("RUN_STATUS_").lower() for v in pb.RunStatus.DESCRIPTOR.values if v.number
}
RUN_STATUS_BY_NAME: dict[str, pb.RunStatus] = {n: cast(pb.RunStatus, v) for v, n in RUN_STATUS_NAMES.items()}
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "canceled", "crashed", "timed_out", "expired"})

ATTEMPT_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("ATTEMPT_STATUS_").lower()
    for v in pb.AttemptStatus.DESCRIPTOR.values
    if v.number
}
ATTEMPT_STATUS_BY_NAME: dict[str, pb.AttemptStatus] = {
    n: cast(pb.AttemptStatus, v) for v, n in ATTEMPT_STATUS_NAMES.items()
}

STEP_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("STEP_STATUS_").lower() for v in pb.StepStatus.DESCRIPTOR.values if v.number
}
STEP_STATUS_BY_NAME: dict[str, pb.StepStatus] = {
    n: cast(pb.StepStatus, v) for v, n in STEP_STATUS_NAMES.items()
}

WAIT_TOKEN_STATUS_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("WAIT_TOKEN_STATUS_").lower()
    for v in wpb.WaitTokenStatus.DESCRIPTOR.values
    if v.number
}

ATTEMPT_OUTCOME_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("ATTEMPT_OUTCOME_").lower()
    for v in wkpb.AttemptOutcome.DESCRIPTOR.values
    if v.number
}
