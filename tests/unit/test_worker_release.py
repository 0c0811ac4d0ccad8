"""A worker shutting down hands its attempts back (issue 15): once the worker's
Draining has started, an attempt handed over is released unstarted; a running
one starts no further step, lets the steps already running record, and is
released (FinishAttempt RELEASED); a task that finishes meanwhile completes;
when the grace is over (Draining.now) what still runs is cancelled and
released; the grace comes from the argument, else CAIRN_WORKER_GRACE, else
10 s. In-memory stubs (sdk_fakes.FakeStub), no server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sdk_fakes import FakeStub
from test_sdk_execution import assignment

from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import InvalidArgumentError, Worker, step, task
from worker_sdk._attempt import Draining
from worker_sdk._execution import execute_attempt

RELEASED = wpb.ATTEMPT_OUTCOME_RELEASED


def outcomes(stub: FakeStub) -> list[int]:
    return [r.outcome for r in stub.requests("FinishAttempt")]


def test_an_attempt_handed_over_while_stopping_is_released_unstarted() -> None:
    ran: list[str] = []

    @task(id="t")
    async def t(payload: Any) -> int:
        ran.append("body")
        return 1

    async def go() -> Any:
        draining = Draining()
        draining.started = True
        stub = FakeStub()
        return await execute_attempt(stub, "default", t, assignment(), draining=draining), stub

    finish, stub = asyncio.run(go())
    assert ran == [] and finish is not None and finish.outcome == RELEASED
    assert outcomes(stub) == [RELEASED] and stub.records() == []
    assert finish.attempt_token == assignment().attempt_token


def test_a_running_attempt_stops_at_its_next_step_after_the_running_one_records() -> None:
    started = asyncio.Event()
    go_on = asyncio.Event()
    ran: list[str] = []

    @step(name="first")
    async def first() -> int:
        ran.append("first")
        started.set()
        await go_on.wait()
        return 1

    @step(name="second")
    async def second() -> int:
        ran.append("second")
        return 2

    @task(id="t")
    async def t(payload: Any) -> int:
        return await first() + await second()

    async def go() -> Any:
        draining = Draining()
        stub = FakeStub()
        attempt = asyncio.create_task(execute_attempt(stub, "default", t, assignment(), draining=draining))
        await started.wait()
        draining.started = True  # the worker was told to stop while "first" runs
        go_on.set()
        return await attempt, stub

    finish, stub = asyncio.run(go())
    assert ran == ["first"], "no step starts once the worker is stopping"
    assert [(r.position, r.name) for r in stub.records()] == [(0, "first")], "the running step records"
    assert finish is not None and outcomes(stub) == [RELEASED]
    calls = [c.method for c in stub.calls if c.method in ("RecordStep", "FinishAttempt")]
    assert calls == ["RecordStep", "FinishAttempt"], "released after the record, not before"


def test_steps_running_together_all_record_before_the_release() -> None:
    go_on = asyncio.Event()
    both_running = asyncio.Event()
    stopping = asyncio.Event()
    running: list[int] = []

    @step(name="slow")
    async def slow(i: int) -> int:
        running.append(i)
        if len(running) == 2:
            both_running.set()
        await go_on.wait()
        return i

    @step(name="after")
    async def after() -> int:
        return 0

    @task(id="t")
    async def t(payload: Any) -> int:
        first = asyncio.create_task(slow(1))
        second = asyncio.create_task(slow(2))
        await stopping.wait()
        try:
            total = await after()  # starts while both run: refused once stopping
        finally:
            go_on.set()  # the two running steps end (and record) after that refusal
        return total + await first + await second

    async def go() -> Any:
        draining = Draining()
        stub = FakeStub()
        loop = asyncio.get_running_loop()
        attempt = loop.create_task(execute_attempt(stub, "default", t, assignment(), draining=draining))
        await both_running.wait()
        draining.started = True
        stopping.set()
        return await attempt, stub

    finish, stub = asyncio.run(go())
    assert sorted(r.position for r in stub.records()) == [0, 1]
    assert outcomes(stub) == [RELEASED] and finish is not None


def test_a_task_that_finishes_while_stopping_completes() -> None:
    go_on = asyncio.Event()
    in_step = asyncio.Event()

    @step(name="only")
    async def only() -> int:
        in_step.set()
        await go_on.wait()
        return 7

    @task(id="t")
    async def t(payload: Any) -> int:
        return await only()

    async def go() -> Any:
        draining = Draining()
        stub = FakeStub()
        attempt = asyncio.create_task(execute_attempt(stub, "default", t, assignment(), draining=draining))
        await in_step.wait()
        draining.started = True
        go_on.set()
        return await attempt, stub

    finish, stub = asyncio.run(go())
    assert outcomes(stub) == [wpb.ATTEMPT_OUTCOME_COMPLETED] and finish is not None


def test_what_still_runs_when_the_grace_ends_is_cancelled_and_released() -> None:
    cancelled: list[bool] = []
    in_body = asyncio.Event()

    @task(id="t")
    async def t(payload: Any) -> int:
        in_body.set()
        try:
            await asyncio.Event().wait()  # no checkpoint to stop at
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return 1

    async def go() -> Any:
        draining = Draining()
        stub = FakeStub()
        attempt = asyncio.create_task(execute_attempt(stub, "default", t, assignment(), draining=draining))
        await in_body.wait()
        draining.started = True
        for _ in range(50):  # turns of the loop: nothing stops a body without a checkpoint
            await asyncio.sleep(0)
        assert not attempt.done()
        draining.now.set()  # the grace is over
        return await asyncio.wait_for(attempt, 5), stub

    finish, stub = asyncio.run(go())
    assert cancelled == [True] and outcomes(stub) == [RELEASED] and finish is not None


def test_the_grace_from_the_argument_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        return 1

    monkeypatch.delenv("CAIRN_WORKER_GRACE", raising=False)
    assert Worker([t], address="127.0.0.1:1").grace == 10.0
    monkeypatch.setenv("CAIRN_WORKER_GRACE", "2.5")
    assert Worker([t], address="127.0.0.1:1").grace == 2.5
    assert Worker([t], address="127.0.0.1:1", grace=0).grace == 0.0
    for bad in ("soon", "-1", "inf"):
        monkeypatch.setenv("CAIRN_WORKER_GRACE", bad)
        with pytest.raises(InvalidArgumentError, match="CAIRN_WORKER_GRACE"):
            Worker([t], address="127.0.0.1:1")
    with pytest.raises(InvalidArgumentError, match="grace"):
        Worker([t], address="127.0.0.1:1", grace=-1)
