"""Child runs, triggered from inside a task: Task.trigger (fire and forget, as a
step), Task.trigger_and_wait and Task.batch_trigger_and_wait (durable waits:
history creates the children when the attempt suspends, and records their
results at the wait's position when all of them have finished)."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cairn.v1 import common_pb2, run_service_pb2, worker_service_pb2
from worker_sdk import suspension
from worker_sdk.context import AttemptContext, current_attempt, current_step
from worker_sdk.errors import CairnError, ChildRunFailedError, NonDeterminismError
from worker_sdk.options import encode_payload, options_from_kwargs
from worker_sdk.retry import Retry
from worker_sdk.writes import attempt_call

if TYPE_CHECKING:
    from worker_sdk.client import Run
    from worker_sdk.task import Task

# The trigger step's RPC errors (unknown task, invalid option) are final: a replay
# would raise them again anyway.
_TRIGGER_STEP_RETRY = Retry(max_attempts=1, non_retryable=(CairnError,))


@dataclass(frozen=True)
class RunHandle:
    """A child run triggered with Task.trigger from inside a task."""

    id: str
    task_id: str

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class ChildResult:
    """How one child run of batch_trigger_and_wait ended: its status (lowercase,
    e.g. "completed" or "failed"), its output when completed, its error
    ({"type", "message"}) otherwise; ok is True when it completed. task_id is the
    child's task."""

    run_id: str
    status: str
    output: Any
    error: dict[str, Any] | None
    ok: bool
    task_id: str = ""

    def unwrap(self) -> Any:
        """The output when the child completed; ChildRunFailedError otherwise."""
        if self.ok:
            return self.output
        error = self.error or {}
        raise ChildRunFailedError(
            self.run_id,
            self.task_id,
            self.status,
            str(error.get("type") or ""),
            str(error.get("message") or ""),
        )


def _child_results(
    value: Any, task_id: str, count: int, run_id: str, position: int, name: str
) -> list[ChildResult]:
    if not isinstance(value, list):
        raise ValueError(
            f"run {run_id}: the result of '{name}' at position {position} is not a list: {value!r}"
        )
    if len(value) != count:
        raise NonDeterminismError(
            f"non-determinism in run {run_id}: '{name}' at position {position} was recorded "
            f"with {len(value)} child run(s) but the code now asks for {count}"
        )
    results = []
    for item in value:
        status = str(item.get("status") or "")
        error = item.get("error")
        results.append(
            ChildResult(
                run_id=str(item.get("run_id") or ""),
                task_id=task_id,
                status=status,
                output=item.get("output"),
                error=error if isinstance(error, dict) else None,
                ok=status == "completed",
            )
        )
    return results


def trigger(
    task: Task, payload: Any, idempotency_key: str | None, options: dict[str, Any]
) -> Awaitable[RunHandle | Run]:
    """Task.trigger: inside a task a step that triggers a child run (linked by
    parent_run_id, deduplicated by the step's idempotency key); elsewhere a
    plain trigger through an AsyncClient configured from the environment."""
    where = f"{task.id}.trigger"
    opts = options_from_kwargs(where, options)
    body = encode_payload(f"payload for task '{task.id}'", payload)
    if current_attempt() is None:
        return _trigger_from_app(task, payload, idempotency_key, options)
    ctx, position = suspension.begin(where)
    return _trigger_in_task(ctx, position, task.id, body, opts, idempotency_key)


async def _trigger_from_app(
    task: Task, payload: Any, idempotency_key: str | None, options: dict[str, Any]
) -> Run:
    from worker_sdk.client import AsyncClient

    async with AsyncClient() as client:
        return await client.trigger(task, payload, idempotency_key=idempotency_key, **options)


async def _trigger_in_task(
    ctx: AttemptContext,
    position: int,
    task_id: str,
    body: common_pb2.Payload,
    opts: common_pb2.TriggerOptions,
    idempotency_key: str | None,
) -> RunHandle:
    from worker_sdk.step import run_step

    name = f"trigger:{task_id}"

    async def call() -> dict[str, Any]:
        request = run_service_pb2.TriggerRunRequest(
            namespace=ctx.namespace,
            task_id=task_id,
            payload=body,
            idempotency_key=idempotency_key or f"{ctx.run_id}:{position}",
            parent_run_id=ctx.run_id,
        )
        if opts.ByteSize():
            request.options.CopyFrom(opts)
        response = await attempt_call(
            ctx, ctx.run_stub.TriggerRun, request, f"triggering task '{task_id}'", fenced=frozenset()
        )
        return {"run_id": response.run.id}

    value = await run_step(ctx, position, name, call, _TRIGGER_STEP_RETRY)
    return RunHandle(id=value["run_id"], task_id=task_id)


def trigger_and_wait(task: Task, payload: Any, options: dict[str, Any]) -> Awaitable[Any]:
    """Task.trigger_and_wait: suspends until one child run finishes; returns its
    output, or raises ChildRunFailedError."""
    where = f"{task.id}.trigger_and_wait"
    if current_attempt() is None or current_step() is not None:
        _outside(where, "Client.trigger_and_wait")
    opts = options_from_kwargs(where, options)
    child = worker_service_pb2.ChildRun(
        task_id=task.id, payload=encode_payload(f"payload for task '{task.id}'", payload), options=opts
    )
    ctx, position = suspension.begin(where)
    return _one(ctx, position, task.id, child)


async def _one(ctx: AttemptContext, position: int, task_id: str, child: worker_service_pb2.ChildRun) -> Any:
    [result] = await _wait_children(ctx, position, f"trigger_and_wait:{task_id}", task_id, [child])
    return result.unwrap()


def batch_trigger_and_wait(
    task: Task, items: Iterable[Any], options: dict[str, Any]
) -> Awaitable[list[ChildResult]]:
    """Task.batch_trigger_and_wait: triggers one child run per payload and suspends
    until all have finished; returns their results in order."""
    where = f"{task.id}.batch_trigger_and_wait"
    if current_attempt() is None or current_step() is not None:
        _outside(where, "Client.batch_trigger and Client.wait")
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise TypeError(f"{where}: expected a list of payloads, got {items!r}")
    items = list(items)
    opts = options_from_kwargs(where, options)
    children = [
        worker_service_pb2.ChildRun(
            task_id=task.id, payload=encode_payload(f"payload {i} for task '{task.id}'", item), options=opts
        )
        for i, item in enumerate(items)
    ]
    if not children:
        return _no_children()
    ctx, position = suspension.begin(where)
    return _wait_children(ctx, position, f"batch_trigger_and_wait:{task.id}", task.id, children)


async def _no_children() -> list[ChildResult]:
    return []


async def _wait_children(
    ctx: AttemptContext, position: int, name: str, task_id: str, children: list[worker_service_pb2.ChildRun]
) -> list[ChildResult]:
    recorded = suspension.lookup(ctx, position, name)
    if recorded is not None:
        value = suspension.resolved(recorded)
        try:
            return _child_results(value, task_id, len(children), ctx.run_id, position, name)
        except NonDeterminismError as err:
            ctx.nondeterminism = ctx.nondeterminism or err
            raise
    finish = suspension.request(ctx)
    finish.wait.CopyFrom(
        worker_service_pb2.WaitSpec(
            position=position, name=name, children=worker_service_pb2.ChildrenWait(runs=children)
        )
    )
    count = f"{len(children)} child runs" if len(children) > 1 else "a child run"
    await suspension.suspend(ctx, finish, f"{count} of task '{task_id}' (position {position})")
    raise AssertionError("unreachable")  # suspend() always raises


def _outside(where: str, instead: str) -> None:
    if current_attempt() is None:
        raise RuntimeError(
            f"{where} is only available inside a task function; from application code use {instead}"
        )
    raise RuntimeError(f"{where} cannot be used inside a @step body; call it from the task function")
