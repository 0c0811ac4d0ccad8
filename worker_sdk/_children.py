"""Child runs, triggered from inside a task: Task.trigger (fire and forget, as a
step), Task.trigger_and_wait and Task.batch_trigger_and_wait (durable waits:
history creates the children when the attempt suspends, and records their
results at the wait's position when all of them have finished). Outside a task,
Task.trigger is a plain trigger on a channel configured from the environment."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from cairn import payloads
from cairn.v1 import common_pb2, run_service_pb2, run_service_pb2_grpc, worker_service_pb2
from worker_sdk import _convert, _validate
from worker_sdk import _suspension as suspension
from worker_sdk._attempt import AttemptContext, current_attempt, current_step
from worker_sdk._calls import attempt_call
from worker_sdk._grpc import (
    DEFAULT_RPC_TIMEOUT,
    call_mapped,
    frontend_address,
    make_stub,
    open_channel,
    resolve_api_key,
    resolve_namespace,
    resolve_tls,
)
from worker_sdk._policies import Retry
from worker_sdk._requests import encode_payload, options_from_kwargs, trigger_request
from worker_sdk._step import run_step
from worker_sdk._tracing import fill, trigger_span
from worker_sdk._types import ErrorInfo, Run, RunHandle, RunStatus
from worker_sdk.errors import (
    ArgumentTypeError,
    CairnError,
    ChildRunFailedError,
    NonDeterminismError,
    OutsideTaskError,
)

R = TypeVar("R")

# The trigger step's RPC errors (unknown task, invalid option) are final: a replay
# would raise them again anyway.
_TRIGGER_STEP_RETRY = Retry(max_attempts=1, non_retryable=(CairnError,))


@dataclass(frozen=True)
class ChildResult(Generic[R]):
    """How one child run of batch_trigger_and_wait ended: its status, its output
    (typed R, the child task's result) when completed, its error otherwise; ok
    is True when it completed. task_id is the child's task."""

    run_id: str
    status: RunStatus
    output: R | None
    error: ErrorInfo | None
    ok: bool
    task_id: str = ""

    def unwrap(self) -> R:
        """The output when the child completed; ChildRunFailedError otherwise."""
        if self.ok:
            return self.output  # type: ignore[return-value]  # R itself may be None
        error = self.error
        raise ChildRunFailedError(
            self.run_id,
            self.task_id,
            self.status,
            error.type if error else "",
            error.message if error else "",
        )


def _child_results(
    recorded: common_pb2.Step, task_id: str, count: int, run_id: str, name: str
) -> list[ChildResult[Any]]:
    """The recorded result of a children wait: its step output, a serialized
    ChildResults (encoding proto/cairn.v1.ChildResults), one result per child in
    the order of the wait's children."""
    position = recorded.position
    output = recorded.output
    if output.encoding != payloads.CHILD_RESULTS:
        raise CairnError(
            f"run {run_id}: the result of '{name}' at position {position} is not a ChildResults "
            f"(encoding {output.encoding or 'json/plain'!r}, expected {payloads.CHILD_RESULTS!r})"
        )
    try:
        results = _convert.child_results(output.data).results
    except ValueError as exc:
        raise CairnError(f"run {run_id}: the result of '{name}' at position {position}: {exc}") from None
    if len(results) != count:
        raise NonDeterminismError(
            f"non-determinism in run {run_id}: '{name}' at position {position} was recorded "
            f"with {len(results)} child run(s) but the code now asks for {count}"
        )
    return [
        ChildResult(
            run_id=r.run_id,
            task_id=task_id,
            status=_convert.run_status(r.status),
            output=_convert.payload_value(r.output) if r.HasField("output") else None,
            error=_convert.error(r),
            ok=r.status == common_pb2.RUN_STATUS_COMPLETED,
        )
        for r in results
    ]


def trigger(
    task_id: str, payload: Any, idempotency_key: str | None, options: Mapping[str, Any]
) -> Awaitable[RunHandle | Run[Any]]:
    """Task.trigger: inside a task a step that triggers a child run (linked by
    parent_run_id, deduplicated by the step's idempotency key); elsewhere a
    plain trigger to the frontend of $CAIRN_ADDRESS in $CAIRN_NAMESPACE, with
    the key of $CAIRN_API_KEY (else `cairn dev`'s admin.key) and the TLS of
    the CAIRN_TLS_* variables."""
    where = f"{task_id}.trigger"
    if current_attempt() is None:
        request = trigger_request(resolve_namespace(None), task_id, payload, idempotency_key, options, where)
        return _trigger_from_app(request)
    opts = options_from_kwargs(where, options)
    body = encode_payload(f"payload for task '{task_id}'", payload)
    if idempotency_key is not None:
        _validate.idempotency_key("idempotency_key", idempotency_key)
    ctx, position = suspension.begin(where)
    return _trigger_in_task(ctx, position, task_id, body, opts, idempotency_key)


async def _trigger_from_app(request: run_service_pb2.TriggerRunRequest) -> Run[Any]:
    address = frontend_address(None)
    channel = open_channel(address, resolve_api_key(None), resolve_tls(None))
    try:
        stub = make_stub(run_service_pb2_grpc.RunServiceStub, channel)
        with trigger_span([request.task_id], [request.options]) as span:
            response = await call_mapped(stub.TriggerRun, request, DEFAULT_RPC_TIMEOUT, frontend=address)
            span.triggered([response.run.id])
    finally:
        await channel.close()
    return _convert.run(response.run)


async def _trigger_in_task(
    ctx: AttemptContext,
    position: int,
    task_id: str,
    body: common_pb2.Payload,
    opts: common_pb2.TriggerOptions,
    idempotency_key: str | None,
) -> RunHandle:
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
        fill(request.options)  # the child runs in this trace (the step's span, or the attempt's context)
        response = await attempt_call(
            ctx, ctx.run_stub.TriggerRun, request, f"triggering task '{task_id}'", fenced=frozenset()
        )
        return {"run_id": response.run.id}

    value = await run_step(ctx, position, name, call, _TRIGGER_STEP_RETRY)
    return RunHandle(id=value["run_id"], task_id=task_id)


def trigger_and_wait(task_id: str, payload: Any, options: Mapping[str, Any]) -> Awaitable[Any]:
    """Task.trigger_and_wait: suspends until one child run finishes; returns its
    output, or raises ChildRunFailedError."""
    where = f"{task_id}.trigger_and_wait"
    if current_attempt() is None or current_step() is not None:
        _outside(where, "Client.trigger_and_wait")
    opts = options_from_kwargs(where, options)
    fill(opts)
    child = worker_service_pb2.ChildRun(
        task_id=task_id, payload=encode_payload(f"payload for task '{task_id}'", payload), options=opts
    )
    ctx, position = suspension.begin(where)
    return _one(ctx, position, task_id, child)


async def _one(ctx: AttemptContext, position: int, task_id: str, child: worker_service_pb2.ChildRun) -> Any:
    [result] = await _wait_children(ctx, position, f"trigger_and_wait:{task_id}", task_id, [child])
    return result.unwrap()


def batch_trigger_and_wait(
    task_id: str, items: Iterable[Any], options: Mapping[str, Any]
) -> Awaitable[list[ChildResult[Any]]]:
    """Task.batch_trigger_and_wait: triggers one child run per payload and suspends
    until all have finished; returns their results in order."""
    where = f"{task_id}.batch_trigger_and_wait"
    if current_attempt() is None or current_step() is not None:
        _outside(where, "Client.batch_trigger and Client.wait")
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise ArgumentTypeError(f"{where}: expected a list of payloads, got {items!r}")
    payloads = list(items)
    _validate.batch_size(where, len(payloads))
    opts = options_from_kwargs(where, options)
    fill(opts)
    children = [
        worker_service_pb2.ChildRun(
            task_id=task_id, payload=encode_payload(f"payload {i} for task '{task_id}'", item), options=opts
        )
        for i, item in enumerate(payloads)
    ]
    if not children:
        return _no_children()
    ctx, position = suspension.begin(where)
    return _wait_children(ctx, position, f"batch_trigger_and_wait:{task_id}", task_id, children)


async def _no_children() -> list[ChildResult[Any]]:
    return []


async def _wait_children(
    ctx: AttemptContext, position: int, name: str, task_id: str, children: list[worker_service_pb2.ChildRun]
) -> list[ChildResult[Any]]:
    recorded = suspension.lookup(ctx, position, name)
    if recorded is not None:
        if recorded.status != common_pb2.STEP_STATUS_COMPLETED:
            suspension.resolved(recorded)  # raises the recorded failure (e.g. WaitTimeoutError)
        try:
            return _child_results(recorded, task_id, len(children), ctx.run_id, name)
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


def _outside(where: str, instead: str) -> NoReturn:
    if current_attempt() is None:
        raise OutsideTaskError(
            f"{where} is only available inside a task function; from application code use {instead}"
        )
    raise OutsideTaskError(f"{where} cannot be used inside a @step body; call it from the task function")
