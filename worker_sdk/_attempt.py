"""The running attempt as the SDK keeps it while task code runs: its state
(AttemptContext), the step whose body is running (StepContext), both held in
contextvars, the worker's shutdown the attempts share (Draining), and the
BaseExceptions that end an attempt early."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from cairn.v1 import common_pb2, worker_service_pb2
from worker_sdk._output import STORED_LEVEL, OutputBuffer, fields_of, message_of
from worker_sdk.errors import NonDeterminismError


class AttemptAbandoned(BaseException):
    """This attempt is no longer the run's current one (canceled, or its lease
    expired and another attempt started), so it must stop without writing
    anything. A BaseException so that `except Exception` in task code cannot
    swallow it."""


class AttemptSuspended(BaseException):
    """The server accepted this attempt's suspension on a durable wait, so the
    attempt is over and must send nothing more; the run resumes in a new attempt
    once the wait is resolved. A BaseException so that `except Exception` in task
    code cannot swallow it."""


class AttemptReleased(BaseException):
    """The worker is shutting down: this attempt stops at its next live step
    instead of starting it, and is handed back (FinishAttempt RELEASED) once
    its running steps have recorded, so another worker goes on from there. A
    BaseException so that `except Exception` in task code cannot swallow it."""


@dataclass
class Draining:
    """A worker's shutdown, shared by its running attempts: once `started`, no
    live step starts (AttemptReleased) and an attempt handed over is given back
    unstarted; once `now` is set (the grace is over), every attempt still
    running is handed back at once."""

    now: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """Stores each line on the run (INFO and above, lower levels when the logger
    is enabled for them) with the step it was logged in and its `extra` fields,
    and passes it on to logging, prefixed with its run and attempt, with
    run_id, attempt and task_id added to the record. Replay-safe: a line logged
    while the attempt replays its journal was logged by the attempt that first
    ran that code, so it is neither stored nor printed again."""

    def __init__(
        self, logger: logging.Logger, extra: dict[str, Any], output: OutputBuffer, attempt: AttemptContext
    ) -> None:
        super().__init__(logger, extra)
        self.output = output
        self.attempt = attempt

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.attempt.replaying:
            return  # logged (and stored) when this code first ran
        if level >= STORED_LEVEL or self.isEnabledFor(level):
            step = current_step()
            self.output.add_log(
                level,
                message_of(msg, args, kwargs.get("exc_info")),
                self.logger.name,
                step.position if step else -1,
                step.name if step else "",
                fields_of(kwargs.get("extra")),
            )
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[run {extra['run_id']} attempt {extra['attempt']}] {msg}", kwargs


@dataclass
class AttemptContext:
    """One attempt as it runs: what it is, its step journal, the next step position,
    the steps it is running, and whether it has been superseded or suspended.
    `attempt_token` is the assignment's: every write of the attempt carries it
    (the server refuses a write without it). `stub` is the WorkerService
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
    attempt_token: str = ""
    run_stub: Any = None
    wait_stub: Any = None
    # The worker's shutdown (None: a worker that never stops its attempts early),
    # and why the attempt is handed back once it stopped for it.
    draining: Draining | None = None
    released: str | None = None
    # Suspension (worker_sdk._suspension): the wait that claimed it, whether another
    # wait tried to suspend meanwhile, the FinishAttempt call in flight, and once
    # the server accepted it a description of the wait and the request sent.
    suspend_claim: str | None = None
    suspend_conflict: bool = False
    suspension: asyncio.Future[Any] | None = None
    suspended: str | None = None
    suspend_request: worker_service_pb2.FinishAttemptRequest | None = None
    # Positions of this attempt's live steps still running or recording (each
    # future is done once the step has recorded or given up), and the positions
    # this attempt recorded: a suspension waits for the running ones below its
    # wait, since history refuses a wait with an unrecorded position below it.
    running: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    recorded: set[int] = field(default_factory=set)
    # Why the attempt was abandoned, once it was ("run R was canceled", ...).
    gone: str | None = None
    logger: logging.LoggerAdapter[logging.Logger] = field(init=False)
    # What the attempt logs and streams, until sent (worker_sdk._output).
    output: OutputBuffer = field(init=False)
    # The highest position of the journal the attempt started with: up to it, the
    # task's code replays what earlier attempts ran (see `replaying`).
    replay_until: int = field(init=False)

    def __post_init__(self) -> None:
        if self.run_stub is None:
            self.run_stub = self.stub
        if self.wait_stub is None:
            self.wait_stub = self.stub
        self.replay_until = max(self.journal, default=-1)
        self.output = OutputBuffer(self.namespace, self.run_id, self.attempt, self.stub, self.attempt_token)
        self.logger = RunLogger(
            logging.getLogger(f"cairn.task.{self.task_id}"),
            {"run_id": self.run_id, "attempt": self.attempt, "task_id": self.task_id},
            self.output,
            self,
        )

    @property
    def replaying(self) -> bool:
        """True while the task's code runs up to a step an earlier attempt
        recorded: what it logs or streams there was sent when it first ran."""
        return self.next_position <= self.replay_until


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


def enter_attempt(ctx: AttemptContext) -> None:
    """Makes ctx the running attempt of the current asyncio task."""
    _attempt.set(ctx)


def enter_step(step: StepContext) -> Token[StepContext | None]:
    """Marks a step body as running; leave_step(token) undoes it."""
    return _step.set(step)


def leave_step(token: Token[StepContext | None]) -> None:
    _step.reset(token)
