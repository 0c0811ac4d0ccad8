"""The SDK's types flow through to user code: a task's payload and result types
reach trigger_and_wait and the clients, returned runs, tokens, schedules and
queues are typed dataclasses, and no protobuf type shows in the public API.
Checked by running mypy (strict) on a small user program."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

from mypy import api

import worker_sdk

ROOT = Path(__file__).resolve().parents[2]

USER_PROGRAM = """
from dataclasses import dataclass
from typing import assert_type

from worker_sdk import (
    AsyncClient, ChildResult, Client, Queue, Run, RunEvent, RunStatus, RunUpdate, Schedule, Task,
    WaitToken, task,
)


@dataclass
class Order:
    id: str


@task(id="price")
async def price(order: Order) -> float:
    return 1.0


@task(id="checkout")
async def checkout(order: Order) -> str:
    total: float = await price.trigger_and_wait(order)
    children = await price.batch_trigger_and_wait([order, order])
    assert_type(children, list[ChildResult[float]])
    return f"{total}"


assert_type(price, Task[Order, float])


async def use(client: AsyncClient) -> None:
    run = await client.trigger_and_wait(price, Order("a"))
    assert_type(run, Run[float])
    assert_type(run.output, float | None)
    assert_type(run.status, RunStatus)
    token = await client.create_token()
    assert_type(token, WaitToken)
    assert_type(await client.list_schedules(), list[Schedule])
    assert_type(await client.list_queues(), list[Queue])
    async for update in client.watch(run.id, after_event_id=0):
        assert_type(update, RunUpdate)
        assert_type(update.event, RunEvent)
        assert_type(update.done, bool)
    async for change in client.watch_runs(task=price, tags=["a"]):
        assert_type(change.run.status, RunStatus)


def use_sync(client: Client) -> None:
    assert_type(client.trigger_and_wait(price, Order("a")), Run[float])
    for update in client.watch("run-1"):
        assert_type(update, RunUpdate)
    for change in client.watch_runs():
        assert_type(change.event.id, int)
"""

BAD_PROGRAM = """
from worker_sdk import task


@task(id="price")
async def price(order: int) -> float:
    return 1.0


async def caller() -> None:
    result: str = await price.trigger_and_wait(1)
"""


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    program = tmp_path / "user_program.py"
    program.write_text(source)
    out, err, code = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", "--python-version=3.11", str(program)]
    )
    return out + err, code


def test_a_user_program_is_typed_end_to_end(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, USER_PROGRAM)
    assert code == 0, out


def test_a_wrong_result_type_is_caught(tmp_path: Path) -> None:
    out, code = _mypy(tmp_path, BAD_PROGRAM)
    assert code == 1 and 'incompatible types in assignment (expression has type "float"' in out.lower(), out


def test_no_protobuf_type_in_a_public_signature() -> None:
    for name in worker_sdk.__all__:
        obj = getattr(worker_sdk, name)
        members = [obj]
        if inspect.isclass(obj):  # its public methods, and how it is made and called
            public = {
                k: v for k, v in vars(obj).items() if not k.startswith("_") or k in ("__init__", "__call__")
            }
            members += public.values()
        for member in members:
            if not callable(member) or isinstance(member, type) and member is not obj:
                continue
            try:
                hints = typing.get_type_hints(member)
            except Exception:  # noqa: BLE001 - a builtin or a C member has no hints to check
                continue
            for hint in hints.values():
                assert "_pb2" not in repr(hint), f"worker_sdk.{name}: {member!r} takes or returns {hint!r}"
