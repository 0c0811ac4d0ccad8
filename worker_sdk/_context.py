"""The `context` object through which task and step code read the running
attempt (run id, attempt number, metadata, logger, a step's idempotency key)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from worker_sdk._attempt import AttemptContext, current_attempt, current_step
from worker_sdk._metadata import set_metadata, update_metadata
from worker_sdk._stream import send_chunk
from worker_sdk.errors import OutsideTaskError


def _require_attempt(what: str) -> AttemptContext:
    ctx = current_attempt()
    if ctx is None:
        raise OutsideTaskError(
            f"context.{what} is only available while a task runs (inside a @task function or a step it calls)"
        )
    return ctx


class Context:
    """The running task as task and step code see it: `context.run_id`,
    `.attempt`, `.task_id`, `.parent_run_id`, `.logger`, `.metadata` (with
    `await .set_metadata(...)` and `await .update_metadata(...)`),
    `await .stream(name, chunk)`, and inside a
    step `.idempotency_key`. Each raises OutsideTaskError (a RuntimeError) when
    used outside a task."""

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
        return await set_metadata(_require_attempt("set_metadata"), metadata)

    async def update_metadata(self, **values: Any) -> dict[str, Any]:
        """Sets the given top-level keys of the run's metadata, keeping the others,
        and returns the metadata as stored."""
        return await update_metadata(_require_attempt("update_metadata"), values)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A standard logger whose lines are stored on the run (INFO and above,
        and lower levels the logger is enabled for), with their level, time,
        attempt, step and `extra` fields, and printed by the worker. Replay-safe:
        code that replays an earlier attempt's steps logs nothing. A run keeps
        at most 5,000 lines (cairn.limits): later ones are only printed."""
        return _require_attempt("logger").logger

    async def stream(self, name: str, chunk: Any) -> None:
        """Sends a chunk (a JSON value, or bytes) on the named stream of the run:
        whoever watches the run (WatchRun, SSE, `cairn runs watch`) sees it at
        once. For model tokens and progress: chunks are kept with the run
        (at most 10,000 and 4 MiB, then dropped) but are not steps: an attempt
        that replays the run's journal does not send again what an earlier
        attempt sent before its last recorded step. Returns once the chunk is stored."""
        await send_chunk(_require_attempt("stream"), name, chunk)

    @property
    def idempotency_key(self) -> str:
        """f"{run_id}:{position}" of the running step: the same in every attempt,
        so external calls made by the step can be de-duplicated."""
        _require_attempt("idempotency_key")
        step = current_step()
        if step is None:
            raise OutsideTaskError(
                "context.idempotency_key is only available inside a @step body, where it identifies that step"
            )
        return step.idempotency_key

    def __repr__(self) -> str:
        ctx = current_attempt()
        if ctx is None:
            return "<cairn context: no task running>"
        return f"<cairn context: run {ctx.run_id} attempt {ctx.attempt} task {ctx.task_id}>"


context = Context()
