"""Cairn's Python worker SDK: declare durable tasks and steps, wait durably
(sleeps, events, tokens, child runs), serve them with a Worker, and trigger and
watch runs with a Client. Depends only on grpcio, protobuf and the `cairn`
protocol package."""

from worker_sdk.children import ChildResult, RunHandle
from worker_sdk.client import AsyncClient, Client, Run, SendEventResult
from worker_sdk.context import context
from worker_sdk.errors import (
    AlreadyExistsError,
    CairnError,
    ChildRunFailedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NonDeterminismError,
    NonRetryableError,
    NotFoundError,
    QueueFullError,
    RunFailedError,
    StepFailedError,
    UnavailableError,
    WaitTimeoutError,
)
from worker_sdk.retry import Queue, Retry
from worker_sdk.step import step
from worker_sdk.task import task
from worker_sdk.waits import WaitToken, wait
from worker_sdk.worker import Worker

__all__ = [
    "task",
    "step",
    "Retry",
    "Queue",
    "NonRetryableError",
    "NonDeterminismError",
    "StepFailedError",
    "CairnError",
    "NotFoundError",
    "InvalidArgumentError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "UnavailableError",
    "QueueFullError",
    "RunFailedError",
    "Worker",
    "Client",
    "AsyncClient",
    "Run",
    "context",
    "wait",
    "WaitToken",
    "WaitTimeoutError",
    "ChildRunFailedError",
    "ChildResult",
    "RunHandle",
    "SendEventResult",
]
