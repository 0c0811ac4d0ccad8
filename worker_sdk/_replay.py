"""Pure journal logic: what a step call at a position finds recorded, and what
replaying that record returns or raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cairn import payloads
from cairn.v1 import common_pb2
from worker_sdk.errors import CairnError, NonDeterminismError, StepFailedError


def build_journal(steps: Iterable[common_pb2.Step]) -> dict[int, common_pb2.Step]:
    """The recorded steps of a run by position."""
    return {s.position: s for s in steps}


def recorded_step(
    journal: Mapping[int, common_pb2.Step], run_id: str, position: int, name: str
) -> common_pb2.Step | None:
    """The record at position, or None when the step must run live. Raises
    NonDeterminismError when the record belongs to a step of another name."""
    recorded = journal.get(position)
    if recorded is None:
        return None
    if recorded.name != name:
        raise NonDeterminismError(
            f"non-determinism in run {run_id}: step position {position} was recorded as "
            f"'{recorded.name}' but the code now calls '{name}'"
        )
    return recorded


def replay(recorded: common_pb2.Step) -> Any:
    """The recorded step's output, or its recorded failure raised as StepFailedError."""
    if recorded.status == common_pb2.STEP_STATUS_COMPLETED:
        if not recorded.HasField("output"):
            return None
        return payloads.decode(recorded.output.data, recorded.output.encoding)
    if recorded.status == common_pb2.STEP_STATUS_FAILED:
        e = recorded.error
        raise StepFailedError(recorded.name, e.type, e.message, e.non_retryable, e.stack_trace)
    raise CairnError(
        f"step '{recorded.name}' at position {recorded.position} has an unknown "
        f"status {recorded.status} in the journal"
    )
