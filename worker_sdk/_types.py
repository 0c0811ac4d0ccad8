"""The SDK's data types, the bottom layer: statuses as str enums whose values are
the lowercase names the CLI and database use ("completed", "failed", ...), and
frozen dataclasses for what the server reports (runs, attempts, steps, wait
tokens, schedules). Pure data: built from protobuf messages by _convert, never
holding one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypedDict, TypeVar

R = TypeVar("R")


class TriggerOptions(TypedDict, total=False):
    """The options of a trigger, as keyword arguments: delay, ttl and max_duration
    (timedelta or seconds), priority (-1000 to 1000, higher first), tags, metadata
    (a JSON object), concurrency_key (the queue's limits then apply per key) and
    traceparent (a W3C trace context to run in; by default the current
    OpenTelemetry span's, when the otel extra is installed)."""

    delay: timedelta | float
    ttl: timedelta | float
    priority: int
    tags: Iterable[str]
    metadata: Mapping[str, Any]
    max_duration: timedelta | float
    concurrency_key: str
    traceparent: str


class RunStatus(StrEnum):
    """A run's status; the last six are terminal and never change again."""

    UNSPECIFIED = ""  # not sent by the server, or a status newer than this SDK

    QUEUED = "queued"
    DELAYED = "delayed"
    EXECUTING = "executing"
    WAITING = "waiting"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """Whether a run in this status has finished for good."""
        return self in TERMINAL_RUN_STATUSES


TERMINAL_RUN_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELED,
        RunStatus.CRASHED,
        RunStatus.TIMED_OUT,
        RunStatus.EXPIRED,
    }
)


class AttemptStatus(StrEnum):
    """How one execution of the task function ended (or that it is running)."""

    UNSPECIFIED = ""  # not sent by the server, or a status newer than this SDK

    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    CRASHED = "crashed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"
    RELEASED = "released"  # handed back by its worker as it shut down; the run went on


class StepStatus(StrEnum):
    """A recorded step's outcome."""

    UNSPECIFIED = ""  # not sent by the server, or a status newer than this SDK

    COMPLETED = "completed"
    FAILED = "failed"


class WaitTokenStatus(StrEnum):
    """A wait token's state: pending until completed once or timed out."""

    UNSPECIFIED = ""  # not sent by the server, or a status newer than this SDK

    PENDING = "pending"
    COMPLETED = "completed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class ErrorInfo:
    """An error as recorded: the exception's qualified type name (e.g.
    "ValueError", "myapp.QuotaError"), its message and stack trace, and whether
    it ended retrying."""

    type: str
    message: str
    stack_trace: str = ""
    non_retryable: bool = False


@dataclass(frozen=True)
class Attempt:
    """One execution of a run's task function on a worker. retry_delay is the
    backoff before the next attempt when this one failed."""

    number: int
    status: AttemptStatus
    worker_id: str
    worker_version: str
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorInfo | None
    retry_delay: timedelta | None


@dataclass(frozen=True)
class Step:
    """A recorded step (or wait) at its position in the run: its output when it
    completed, its error when it failed, and the attempt that recorded it.
    try_errors are the errors of the tries retried in place before the last one,
    oldest first (the latest cairn.limits.MAX_TRY_ERRORS of them). A children
    wait's output is a list of {run_id, status, output, error}, one per child."""

    position: int
    name: str
    status: StepStatus
    attempt: int
    tries: int
    output: Any
    error: ErrorInfo | None
    recorded_at: datetime | None
    try_errors: tuple[ErrorInfo, ...] = ()


@dataclass(frozen=True)
class RunEvent:
    """One entry of a run's event log ("triggered", "attempt_started", ...);
    details is the entry's JSON object as text."""

    id: int
    type: str
    attempt: int
    details: str
    at: datetime | None


@dataclass(frozen=True)
class WaitInfo:
    """What a waiting run waits for: kind is "sleep", "event", "token" or
    "children"; the other fields describe that wait."""

    kind: str
    position: int
    event_name: str | None
    event_key: str | None
    token_id: str | None
    child_run_ids: list[str]
    until: datetime | None


@dataclass(frozen=True)
class Run(Generic[R]):
    """A run as the server last reported it. output is the task's result once
    completed (typed R when the run was triggered with a Task[P, R]); error is
    set when it ended otherwise. attempts, steps, events and child_run_ids are
    filled by get and wait, not in lists."""

    id: str
    task: str
    status: RunStatus
    output: R | None = None
    error: ErrorInfo | None = None
    attempts: list[Attempt] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    namespace: str = ""
    queue: str = ""
    input: Any = None
    idempotency_key: str | None = None
    attempt_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    events: list[RunEvent] = field(default_factory=list, repr=False)
    parent_run_id: str | None = None
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    child_run_ids: list[str] = field(default_factory=list)
    wait: WaitInfo | None = None
    ttl: timedelta | None = None
    max_duration: timedelta | None = None
    schedule_id: str | None = None
    concurrency_key: str | None = None
    replay_of: str | None = None  # the run this one replays (AsyncClient.replay)
    trace_id: str | None = None  # the W3C trace id of its spans (32 hex digits)

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal status, which never changes again."""
        return self.status in TERMINAL_RUN_STATUSES


@dataclass(frozen=True)
class RunUpdate:
    """One change of a watched run (AsyncClient.watch, watch_runs): the event log
    entry that happened, the run right after it (without input, attempts, steps
    and events; updates in a row of an unchanged run share one Run), and done,
    true on the last update of a run: WatchRun ends there. event.id orders a
    run's updates and resumes a watch (after_event_id)."""

    event: RunEvent
    run: Run[Any]
    done: bool = False


@dataclass(frozen=True)
class RunHandle:
    """A child run triggered with Task.trigger from inside a task. str() is its id."""

    id: str
    task_id: str

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class WaitToken:
    """A token a run can wait on (wait.for_token) until someone completes it, e.g.
    `Client.complete_token(token.id, payload)`. str(token) is its id. Made inside
    a task (wait.create_token) it carries its id and timeout; read through a
    client it carries the rest too."""

    id: str
    timeout_at: datetime | None = None
    status: WaitTokenStatus = WaitTokenStatus.PENDING
    run_id: str | None = None
    payload: Any = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    namespace: str = ""

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Schedule:
    """A schedule that triggers `task` with `payload` on a cron expression read in
    `timezone`. declared: made by a @task(schedule=...) rather than by a client."""

    id: str
    task: str
    cron: str
    timezone: str = "UTC"
    payload: Any = None
    deduplication_key: str | None = None
    paused: bool = False
    declared: bool = False
    next_fire_at: datetime | None = None
    last_fired_at: datetime | None = None
    last_run_id: str | None = None
    namespace: str = ""


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` attempt starts per `period` (per queue, or per
    concurrency key when runs have one)."""

    limit: int
    period: timedelta


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as matching knows it: what it serves, its version and slots, when
    it registered and was last seen (a registration or a poll, refreshed at most
    every few seconds), and whether that was recent enough to count as connected
    (cairn.limits.WORKER_CONNECTED_SECONDS)."""

    worker_id: str
    version: str
    task_ids: list[str]
    slots: int
    registered_at: datetime | None
    last_seen_at: datetime | None
    connected: bool
    running: int = 0  # attempts executing now: slots in use


@dataclass(frozen=True)
class SendEventResult:
    """Where an event went: the runs whose wait it resolved now, and whether it
    was kept for the run it was sent to because that run is not waiting for it yet."""

    delivered_run_ids: list[str]
    buffered: bool
