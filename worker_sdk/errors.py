"""The exceptions the SDK raises and the ones task code raises to steer retries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from worker_sdk.client import Run


def type_name(t: type) -> str:
    """The name an error type is recorded under: "ValueError" for builtins,
    otherwise module plus qualified name, e.g. "myapp.tasks.QuotaError"."""
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


class NonRetryableError(Exception):
    """Raise it from a task or step when retrying cannot help: the step is not
    retried in place and the run fails without another attempt."""


class NonDeterminismError(NonRetryableError):
    """A replay met a step whose name differs from the one recorded at its
    position: the code changed under a running run. The run fails at once,
    rather than returning a result recorded for another step."""


class StepFailedError(Exception):
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


class CairnError(Exception):
    """An error answered by the Cairn server; `code` is the gRPC status code and
    the message is the server's explanation."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(CairnError):
    """The run or task does not exist (gRPC NOT_FOUND)."""


class InvalidArgumentError(CairnError):
    """The server refused a field of the request (gRPC INVALID_ARGUMENT)."""


class AlreadyExistsError(CairnError):
    """The thing to create exists already (gRPC ALREADY_EXISTS)."""


class FailedPreconditionError(CairnError):
    """The request does not apply in the run's current state, e.g. canceling a
    finished run (gRPC FAILED_PRECONDITION)."""


class UnavailableError(CairnError):
    """The server could not be reached (gRPC UNAVAILABLE)."""


class QueueFullError(CairnError):
    """The run's queue holds as many queued runs as its max_depth allows, so the
    trigger was refused (gRPC RESOURCE_EXHAUSTED); the message names the queue.
    Nothing was created: trigger again later."""


class RunFailedError(Exception):
    """A waited-for run ended in a status other than completed; `run` holds it."""

    def __init__(self, run: Run) -> None:
        detail = ""
        if run.error:
            detail = f": {run.error.get('type', '')}: {run.error.get('message', '')}"
        super().__init__(f"run {run.id} of task '{run.task}' ended {run.status}{detail}")
        self.run = run


class AttemptAbandoned(BaseException):
    """Internal: this attempt is no longer the run's current one (canceled, or
    its lease expired and another attempt started), so it must stop without
    writing anything. A BaseException so that `except Exception` in task code
    cannot swallow it."""


class AttemptSuspended(BaseException):
    """Internal: the server accepted this attempt's suspension on a durable wait,
    so the attempt is over and must send nothing more; the run resumes in a new
    attempt once the wait is resolved. A BaseException so that `except Exception`
    in task code cannot swallow it."""


class ConcurrentWaitError(NonRetryableError, RuntimeError):
    """A durable wait was started while another wait of the same attempt was
    suspending it. An attempt suspends on one wait at a time: await waits one
    after the other, and use Task.batch_trigger_and_wait to fan out to children."""


class WaitTimeoutError(Exception):
    """A durable wait (wait.for_event, wait.for_token, ...) reached its timeout
    before it was resolved. Task code may catch it and go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChildRunFailedError(Exception):
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
