"""Run metadata inside an attempt (execute_attempt against an in-memory stand-in
for the WorkerService stub): context.metadata and context.parent_run_id from the
assignment, and updates as fenced writes."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub
from sdk_wait_helpers import assignment, execute, output_of

from worker_sdk import context, task

# ---- metadata ----------------------------------------------------------------------------


def test_metadata_starts_from_the_assignment_and_updates_are_fenced_writes() -> None:
    seen = {}

    @task(id="t")
    async def t(payload: Any) -> Any:
        seen["initial"] = context.metadata
        seen["parent"] = context.parent_run_id
        copy = context.metadata
        copy["mutated"] = True  # a copy: the run's metadata is unchanged
        await context.update_metadata(progress=50)
        seen["merged"] = context.metadata
        await context.set_metadata({"only": "this"})
        return context.metadata

    finish, stub = execute(t, assignment(metadata={"user": "ada", "n": 1}, parent="p-1"))
    assert seen["initial"] == {"user": "ada", "n": 1}
    assert seen["parent"] == "p-1"
    assert seen["merged"] == {"user": "ada", "n": 1, "progress": 50}
    assert output_of(finish) == {"only": "this"}
    updates = stub.requests("UpdateRunMetadata")
    assert [(u.run_id, u.attempt) for u in updates] == [("run-1", 2), ("run-1", 2)]
    assert dict(updates[0].metadata) == {"user": "ada", "n": 1.0, "progress": 50.0}


def test_metadata_defaults_and_validation() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        assert context.metadata == {} and context.parent_run_id is None
        with pytest.raises(TypeError, match="metadata must be a dict"):
            await context.set_metadata([1, 2])  # type: ignore[arg-type]
        return "ok"

    finish, stub = execute(t, assignment())
    assert output_of(finish) == "ok", finish.error.message
    assert stub.methods() == ["FinishAttempt"]


def test_refused_metadata_update_abandons_a_stale_attempt() -> None:
    @task(id="t")
    async def t(payload: Any) -> Any:
        try:
            await context.set_metadata({"a": 1})
        except Exception:
            return "swallowed"

    stub = FakeStub(refuse={"UpdateRunMetadata": grpc.StatusCode.FAILED_PRECONDITION})
    finish, _ = execute(t, assignment(), stub)
    assert finish is None and stub.methods() == ["UpdateRunMetadata"]
