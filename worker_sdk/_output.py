"""What a running attempt logs and streams (context.logger, context.stream),
on its way to the run's event log through WorkerService.AppendRunOutput.
Entries made in one turn of the event loop go in one call; the attempt's next
step record or end first sends what is pending, so the run's log keeps the
order in which the task made them. Not a checkpoint: a line that cannot be
stored is dropped with a warning, never failing the task."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import Struct

from cairn import payloads
from cairn.limits import (
    LOG_LEVELS,
    MAX_LOG_FIELDS_BYTES,
    MAX_LOG_MESSAGE_CHARS,
    MAX_OUTPUTS_PER_APPEND,
)
from cairn.v1 import common_pb2, worker_service_pb2
from worker_sdk._grpc import WRITE_TIMEOUT, attempt_gone_of

log = logging.getLogger("cairn.worker")

# Lines below this level are stored only when the logger is enabled for them.
STORED_LEVEL = logging.INFO
# The fields every RunLogger adds to a record: shown in the line's prefix, not stored as fields.
RUN_FIELDS = frozenset({"run_id", "attempt", "task_id"})
TRUNCATED = " …[truncated]"


def level_name(level: int) -> str:
    """A logging level as one of LOG_LEVELS (a custom level as the next standard one below it)."""
    for name in reversed(LOG_LEVELS):
        if level >= logging.getLevelName(name):
            return name
    return LOG_LEVELS[0]


def message_of(msg: Any, args: tuple[Any, ...], exc_info: Any) -> str:
    """The message as logging would format it, with the traceback of exc_info,
    cut to MAX_LOG_MESSAGE_CHARS."""
    text = str(msg)
    if args:
        try:
            text = text % args
        except (TypeError, ValueError):
            text = f"{text} {args!r}"
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
    if len(text) > MAX_LOG_MESSAGE_CHARS:
        text = text[: MAX_LOG_MESSAGE_CHARS - len(TRUNCATED)] + TRUNCATED
    return text


def fields_of(extra: Any) -> Struct:
    """A record's `extra` as a JSON object (values JSON can't hold as their
    str()), or {"truncated": true} when over MAX_LOG_FIELDS_BYTES."""
    values = {k: v for k, v in dict(extra or {}).items() if k not in RUN_FIELDS}
    text = json.dumps(values, default=str)
    if len(text) > MAX_LOG_FIELDS_BYTES:
        text = '{"truncated": true}'
    fields = Struct()
    fields.update(json.loads(text))
    return fields


class OutputBuffer:
    """The entries of one attempt not yet sent, and their sending."""

    def __init__(self, namespace: str, run_id: str, attempt: int, stub: Any, attempt_token: str = "") -> None:
        self._namespace = namespace
        self._run_id = run_id
        self._attempt = attempt
        self._attempt_token = attempt_token
        self._stub = stub
        self._pending: list[tuple[worker_service_pb2.RunOutput, asyncio.Future[None] | None]] = []
        self._scheduled = False
        self._warned: set[str] = set()

    def add_log(
        self, level: int, message: str, logger: str, step_position: int, step_name: str, fields: Struct
    ) -> None:
        """Queues a line; it goes with the next flush. Without a running event
        loop (a line logged from another thread) it is only printed."""
        line = common_pb2.LogLine(
            level=level_name(level),
            message=message,
            logger=logger[:256],
            step_position=step_position,
            step_name=step_name,
            fields=fields,
        )
        line.at.FromDatetime(datetime.now(UTC))
        self._add(worker_service_pb2.RunOutput(log=line), None)

    def add_chunk(self, stream: str, data: bytes, encoding: str = payloads.JSON) -> asyncio.Future[None]:
        """Queues a chunk; the future ends once it is stored (or raises the refusal)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        chunk = common_pb2.StreamChunk(stream=stream, data=common_pb2.Payload(data=data, encoding=encoding))
        self._add(worker_service_pb2.RunOutput(chunk=chunk), future)
        return future

    def _add(self, entry: worker_service_pb2.RunOutput, future: asyncio.Future[None] | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending.append((entry, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Sends what is pending now, in calls of at most MAX_OUTPUTS_PER_APPEND
        entries, in order: call it right before any other write of the attempt."""
        self._scheduled = False
        while self._pending:
            batch = self._pending[:MAX_OUTPUTS_PER_APPEND]
            del self._pending[:MAX_OUTPUTS_PER_APPEND]
            request = worker_service_pb2.AppendRunOutputRequest(
                namespace=self._namespace,
                run_id=self._run_id,
                attempt=self._attempt,
                attempt_token=self._attempt_token,
                outputs=[entry for entry, _ in batch],
            )
            enqueue = getattr(self._stub, "enqueue_output", None)
            sent = (
                enqueue(request, WRITE_TIMEOUT)
                if enqueue is not None
                else asyncio.ensure_future(self._stub.AppendRunOutput(request, timeout=WRITE_TIMEOUT))
            )
            futures = [f for _, f in batch if f is not None]
            sent.add_done_callback(lambda done, futures=futures: self._sent(done, futures))

    def _sent(self, done: asyncio.Future[Any], futures: list[asyncio.Future[None]]) -> None:
        exc = None if done.cancelled() else done.exception()
        if done.cancelled() or exc is not None:
            if exc is not None and attempt_gone_of(exc) is None:
                self._warn_once("failed", "run %s attempt %d: output not stored: %s", exc)
        else:
            response = done.result()
            if response.logs_dropped:
                self._warn_once(
                    "logs",
                    "run %s attempt %d: the run's log is full; %s lines dropped",
                    response.logs_dropped,
                )
            if response.chunks_dropped:
                self._warn_once(
                    "chunks",
                    "run %s attempt %d: the run's stream bound is reached; %s chunks dropped",
                    response.chunks_dropped,
                )
        for future in futures:
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            elif done.cancelled():
                future.cancel()
            else:
                future.set_result(None)

    def _warn_once(self, kind: str, message: str, detail: Any) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, self._run_id, self._attempt, detail)
