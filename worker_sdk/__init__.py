"""Cairn's Python worker SDK: declare durable tasks and steps, wait durably
(sleeps, events, tokens, child runs), serve them with a Worker, and trigger and
watch runs with a Client. Depends only on grpcio, protobuf and the `cairn`
protocol package.

Every public name is importable from here. The implementation modules are
private (`_` prefix), in layers that import only downward:

    _types                      statuses and dataclasses (no SDK imports)
    errors                      every exception, under CairnError
    _validate, _policies        input checks (cairn.limits); Retry, Queue
    _requests, _convert         SDK values -> protobuf; protobuf -> dataclasses
    _grpc, _batching            channels, retries, status codes; group commit
    _attempt, _calls, _replay   the running attempt; its fenced calls; the journal
    _failures, _suspension      errors as recorded; suspending on a wait
    _step, _metadata            @step; the run's metadata
    _context, _waits, _children the `context` object; `wait`; child runs
    _task                       @task and Task[P, R]
    _execution, _client         running one attempt; AsyncClient
    _worker, _sync_client       Worker; Client
"""

from worker_sdk._children import ChildResult
from worker_sdk._client import AsyncClient
from worker_sdk._context import Context, context
from worker_sdk._grpc import TLSConfig
from worker_sdk._policies import Queue, Retry
from worker_sdk._step import step
from worker_sdk._sync_client import Client
from worker_sdk._task import Task, task
from worker_sdk._types import (
    Attempt,
    AttemptStatus,
    ErrorInfo,
    RateLimit,
    Run,
    RunEvent,
    RunHandle,
    RunStatus,
    RunUpdate,
    Schedule,
    SendEventResult,
    Step,
    StepStatus,
    TriggerOptions,
    WaitInfo,
    WaitToken,
    WaitTokenStatus,
    WorkerInfo,
)
from worker_sdk._waits import Wait, wait
from worker_sdk._worker import Worker
from worker_sdk.errors import (
    AlreadyExistsError,
    ArgumentTypeError,
    CairnError,
    ChildRunFailedError,
    ConcurrentWaitError,
    FailedPreconditionError,
    InvalidArgumentError,
    NonDeterminismError,
    NonRetryableError,
    NotFoundError,
    OutsideTaskError,
    PayloadError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitedError,
    RunFailedError,
    RunTimeoutError,
    StepFailedError,
    UnauthenticatedError,
    UnavailableError,
    WaitTimeoutError,
)

__all__ = [
    # declaring and serving tasks
    "task",
    "Task",
    "step",
    "Retry",
    "Queue",
    "Worker",
    # inside a task
    "context",
    "Context",
    "wait",
    "Wait",
    "WaitToken",
    "ChildResult",
    "RunHandle",
    # clients and what they return
    "Client",
    "AsyncClient",
    "TLSConfig",
    "TriggerOptions",
    "Run",
    "RunStatus",
    "Attempt",
    "AttemptStatus",
    "Step",
    "StepStatus",
    "ErrorInfo",
    "RunEvent",
    "RunUpdate",
    "WaitInfo",
    "WaitTokenStatus",
    "Schedule",
    "RateLimit",
    "SendEventResult",
    "WorkerInfo",
    # errors: all under CairnError
    "CairnError",
    "NotFoundError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "PayloadError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "UnavailableError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitedError",
    "OutsideTaskError",
    "RunTimeoutError",
    "RunFailedError",
    "NonRetryableError",
    "NonDeterminismError",
    "ConcurrentWaitError",
    "StepFailedError",
    "WaitTimeoutError",
    "ChildRunFailedError",
]
