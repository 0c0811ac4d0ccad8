"""Exceptions as the protocol records them (ErrorInfo): qualified type name,
message and stack trace, with NUL characters escaped (the server cannot store
them)."""

from __future__ import annotations

import traceback

from cairn.v1 import common_pb2
from worker_sdk._policies import Retry
from worker_sdk.errors import StepFailedError, type_name


def one_line(text: str, limit: int = 200) -> str:
    """text shortened to one log-friendly line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """text without NUL characters, which the server cannot store."""
    return text.replace("\x00", "\\x00")


def error_info(exc: BaseException, non_retryable: bool) -> common_pb2.ErrorInfo:
    """An exception as recorded: qualified type name, message and stack trace."""
    return common_pb2.ErrorInfo(
        type=type_name(type(exc)),
        message=printable(str(exc)),
        stack_trace=printable("".join(traceback.format_exception(exc))),
        non_retryable=non_retryable,
    )


def task_error_info(retry: Retry, exc: BaseException) -> common_pb2.ErrorInfo:
    """The error a task's attempt fails with, under the task's retry policy. A
    StepFailedError is recorded as the step's original error (type, message,
    non_retryable flag), so a run failed by a step reads the same whether the
    step failed now or was replayed; the task's non_retryable types are matched
    against that recorded type name too."""
    if isinstance(exc, StepFailedError):
        trace = "".join(traceback.format_exception(exc))
        if exc.__cause__ is None and exc.stack_trace:
            trace += "\nThe step's recorded error:\n" + exc.stack_trace
        non_retryable = (
            exc.non_retryable or retry.is_non_retryable(exc) or exc.error_type in retry.non_retryable_names()
        )
        return common_pb2.ErrorInfo(
            type=exc.error_type,
            message=printable(exc.message),
            stack_trace=printable(trace),
            non_retryable=non_retryable,
        )
    return error_info(exc, retry.is_non_retryable(exc))
