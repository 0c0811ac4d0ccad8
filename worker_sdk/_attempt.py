"""Where the running attempt and step live while task code runs (contextvars),
and the `context` object through which task code reads them."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cairn.v1 import common_pb2
from worker_sdk.errors import NonDeterminismError


class RunLogger(logging.LoggerAdapter):
    """Prefixes each line with its run and attempt and adds run_id, attempt and
    task_id to the record, keeping any `extra` the caller passes."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[run {self.extra['run_id']} attempt {self.extra['attempt']}] {msg}", kwargs


@dataclass
class AttemptContext:
    """One attempt as it runs: what it is, its step journal, the next step position
    and whether it has been superseded or suspended. `stub` is the WorkerService
    stub (or any object with the same async methods) used for its writes;
    `run_stub` and `wait_stub` (RunService, WaitService; `stub` when not given)
    serve child triggers and wait tokens."""

    namespace: str
    run_id: str
    attempt: int
    task_id: str
    journal: dict[int, common_pb2.Step]
    stub: Any
    lease_seconds: float
    next_position: int = 0
    abandoned: bool = False
    nondeterminism: NonDeterminismError | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str = ""
    run_stub: Any = None
    wait_stub: Any = None
    # Suspension (worker_sdk.suspension): the wait that claimed it, whether another
    # wait tried to suspend meanwhile, the FinishAttempt call in flight, and once
    # the server accepted it a description of the wait and the request sent.
    suspend_claim: str | None = None
    suspend_conflict: bool = False
    suspension: asyncio.Future[Any] | None = None
    suspended: str | None = None
    suspend_request: Any = None
    logger: logging.LoggerAdapter = field(init=False)

    def __post_init__(self) -> None:
        if self.run_stub is None:
            self.run_stub = self.stub
        if self.wait_stub is None:
            self.wait_stub = self.stub
        self.logger = RunLogger(
            logging.getLogger(f"cairn.task.{self.task_id}"),
            {"run_id": self.run_id, "attempt": self.attempt, "task_id": self.task_id},
        )


@dataclass(frozen=True)
class StepContext:
    """The step whose body is running."""

    name: str
    position: int
    idempotency_key: str


_attempt: ContextVar[AttemptContext | None] = ContextVar("cairn_attempt", default=None)
_step: ContextVar[StepContext | None] = ContextVar("cairn_step", default=None)


def current_attempt() -> AttemptContext | None:
    return _attempt.get()


def current_step() -> StepContext | None:
    return _step.get()


def _require_attempt(what: str) -> AttemptContext:
    ctx = _attempt.get()
    if ctx is None:
        raise RuntimeError(
            f"context.{what} is only available while a task runs (inside a @task function or a step it calls)"
        )
    return ctx


class Context:
    """The running task as task and step code see it: `context.run_id`,
    `.attempt`, `.task_id`, `.parent_run_id`, `.logger`, `.metadata` (with
    `await .set_metadata(...)` and `await .update_metadata(...)`), and inside a
    step `.idempotency_key`. Each raises RuntimeError when used outside a task."""

    @property
    def run_id(self) -> str:
        return _require_attempt("run_id").run_id

    @property
    def attempt(self) -> int:
        return _require_attempt("attempt").attempt

    @property
    def task_id(self) -> str:
        return _require_attempt("task_id").task_id

    @property
    def parent_run_id(self) -> str | None:
        """The run that triggered this one from its code, or None."""
        return _require_attempt("parent_run_id").parent_run_id or None

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the run's metadata (a JSON object), as of the attempt's start
        and this attempt's own updates since."""
        return copy.deepcopy(_require_attempt("metadata").metadata)

    async def set_metadata(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Replaces the run's metadata with a JSON object (at most 4 KiB as JSON)
        and returns it as stored. Not journaled: a replay sets it again."""
        from worker_sdk.metadata import set_metadata

        return await set_metadata(_require_attempt("set_metadata"), metadata)

    async def update_metadata(self, **values: Any) -> dict[str, Any]:
        """Sets the given top-level keys of the run's metadata, keeping the others,
        and returns the metadata as stored."""
        from worker_sdk.metadata import update_metadata

        return await update_metadata(_require_attempt("update_metadata"), values)

    @property
    def logger(self) -> logging.LoggerAdapter:
        return _require_attempt("logger").logger

    @property
    def idempotency_key(self) -> str:
        """f"{run_id}:{position}" of the running step: the same in every attempt,
        so external calls made by the step can be de-duplicated."""
        _require_attempt("idempotency_key")
        step = _step.get()
        if step is None:
            raise RuntimeError(
                "context.idempotency_key is only available inside a @step body, where it identifies that step"
            )
        return step.idempotency_key

    def __repr__(self) -> str:
        ctx = _attempt.get()
        if ctx is None:
            return "<cairn context: no task running>"
        return f"<cairn context: run {ctx.run_id} attempt {ctx.attempt} task {ctx.task_id}>"


context = Context()
