"""Everything the SDK raises, under one root, CairnError: errors answered by the
server (NotFoundError, QueueFullError, ...), arguments refused before a call is
sent (InvalidArgumentError, ArgumentTypeError), and the errors task code raises
or catches (NonRetryableError, StepFailedError, WaitTimeoutError, ...).

A public module because errors are recorded under their qualified type name
("worker_sdk.errors.NonRetryableError"), which run histories and
Retry(non_retryable=...) matching keep."""

from __future__ import annotations

from typing import Any

import grpc

from cairn import payloads
from worker_sdk._types import Run

__all__ = [
    "AlreadyExistsError",
    "ArgumentTypeError",
    "CairnError",
    "ChildRunFailedError",
    "ConcurrentWaitError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFoundError",
    "OutsideTaskError",
    "PayloadError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitedError",
    "RunFailedError",
    "RunTimeoutError",
    "StepFailedError",
    "UnauthenticatedError",
    "UnavailableError",
    "WaitTimeoutError",
    "type_name",
]


def type_name(t: type) -> str:
    """The name an error type is recorded under: "ValueError" for builtins,
    otherwise module plus qualified name, e.g. "myapp.tasks.QuotaError"."""
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


class CairnError(Exception):
    """The root of every error the SDK raises. `code` is the gRPC status code
    when the server answered it (or the code the server would have answered,
    for an argument the SDK refused first), else None."""

    def __init__(self, message: str = "", code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


# ---- answered by the server (or refused before sending, as the server would) ----


class NotFoundError(CairnError):
    """The run, task, token, schedule or queue does not exist (gRPC NOT_FOUND)."""


class InvalidArgumentError(CairnError, ValueError):
    """A field of the request is invalid, the message names it: refused by the
    SDK before sending, or by the server (gRPC INVALID_ARGUMENT). A ValueError."""

    def __init__(
        self, message: str = "", code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT
    ) -> None:
        super().__init__(message, code)


class ArgumentTypeError(CairnError, TypeError):
    """An argument of the wrong type, refused before anything is sent. A TypeError."""


class PayloadError(InvalidArgumentError, payloads.PayloadError):
    """A payload, output or event body that cannot be encoded as JSON, or is too large."""


class AlreadyExistsError(CairnError):
    """The thing to create exists already (gRPC ALREADY_EXISTS)."""


class FailedPreconditionError(CairnError):
    """The request does not apply in the current state, e.g. canceling a
    finished run or completing a token twice (gRPC FAILED_PRECONDITION)."""


class UnavailableError(CairnError):
    """The server could not be reached (gRPC UNAVAILABLE)."""


class UnauthenticatedError(CairnError):
    """The frontend wants an API key and none was sent, or the key sent is
    unknown, revoked or expired (gRPC UNAUTHENTICATED). The SDK sends the key
    of api_key=, else $CAIRN_API_KEY, else `cairn dev`'s admin.key."""


class PermissionDeniedError(CairnError):
    """The API key is valid but may not do this: another namespace's, or a role
    without the right (gRPC PERMISSION_DENIED)."""


class QueueFullError(CairnError):
    """The run's queue holds as many queued runs as its max_depth allows, so the
    trigger was refused (gRPC RESOURCE_EXHAUSTED); the message names the queue.
    Nothing was created: trigger again later. (A refusal by a limit of the API
    key is RateLimitedError.)"""


class RateLimitedError(CairnError):
    """The API key is over a limit of the frontend: its request rate, or the long
    polls and streams it may hold open at once (gRPC RESOURCE_EXHAUSTED with a
    retry delay; the message names the limit and the key's id). Nothing was
    done. The SDK retries reads, polls, heartbeats, step records and triggers
    with an idempotency key after the delay, within the call's deadline; this
    is raised for the rest, or when the delay would pass the deadline.
    `retry_after`: the seconds the server asked to wait before trying again."""

    def __init__(
        self,
        message: str = "",
        code: grpc.StatusCode | None = grpc.StatusCode.RESOURCE_EXHAUSTED,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class OutsideTaskError(CairnError, RuntimeError):
    """A task-only call (context, waits, child runs) made outside a running task,
    or inside a step body where it is not allowed. A RuntimeError."""


class RunTimeoutError(CairnError, TimeoutError):
    """Client.wait's timeout passed before the run finished. A TimeoutError."""


class RunFailedError(CairnError):
    """A waited-for run ended in a status other than completed; `run` holds it."""

    def __init__(self, run: Run[Any]) -> None:
        detail = f": {run.error.type}: {run.error.message}" if run.error else ""
        super().__init__(f"run {run.id} of task '{run.task}' ended {run.status}{detail}")
        self.run = run


# ---- raised and caught by task code ----


class NonRetryableError(CairnError):
    """Raise it from a task or step when retrying cannot help: the step is not
    retried in place and the run fails without another attempt."""


class NonDeterminismError(NonRetryableError):
    """A replay met a step whose name differs from the one recorded at its
    position: the code changed under a running run. The run fails at once,
    rather than returning a result recorded for another step."""


class ConcurrentWaitError(NonRetryableError, RuntimeError):
    """A durable wait was started while another wait of the same attempt was
    suspending it. An attempt suspends on one wait at a time: await waits one
    after the other, and use Task.batch_trigger_and_wait to fan out to children."""


class StepFailedError(CairnError):
    """A step raised after its retries. Raised both when the step fails live and
    when its recorded failure is replayed, so task code sees the same exception
    either way. The original error is described by error_type and message (and
    chained as __cause__ when the step failed in this attempt)."""

    def __init__(
        self,
        step_name: str,
        error_type: str,
        message: str,
        non_retryable: bool = False,
        stack_trace: str = "",
    ) -> None:
        super().__init__(f"step '{step_name}' failed: {error_type}: {message}")
        self.step_name = step_name
        self.error_type = error_type
        self.message = message
        self.non_retryable = non_retryable
        self.stack_trace = stack_trace


class WaitTimeoutError(CairnError):
    """A durable wait (wait.for_event, wait.for_token, ...) reached its timeout
    before it was resolved. Task code may catch it and go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChildRunFailedError(CairnError):
    """A child run waited for with trigger_and_wait (or ChildResult.unwrap) ended
    in a status other than completed: failed, canceled, crashed, timed_out or
    expired. Task code may catch it and go on."""

    def __init__(
        self, run_id: str, task_id: str, status: str, error_type: str = "", message: str = ""
    ) -> None:
        detail = f": {error_type}: {message}" if error_type or message else ""
        super().__init__(f"child run {run_id} of task '{task_id}' ended {status}{detail}")
        self.run_id = run_id
        self.task_id = task_id
        self.status = status
        self.error_type = error_type
        self.message = message
