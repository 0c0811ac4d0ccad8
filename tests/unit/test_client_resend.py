"""Calls the SDK and the CLI send again after UNAVAILABLE (issue 15, "restarts no
client notices"; the rule is cairn.resend): reads, cancels and triggers carrying
a request id or an idempotency key are sent again, unchanged, with a growing
pause, within the call's deadline, and answered once the frontend is back;
what is not safe to repeat (an event, a trigger with neither) is not; when the
time is up the error names what was down (the frontend at its address, or the
service a frontend said is down) and how long it was tried; a cancel or a
token's completion whose first sending had landed answers as if it had been
answered; a finish answered "ended" after a lost answer counts as finished.
In-memory stubs, no server."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub
from test_sdk_execution import assignment, execute
from test_sdk_watch import client_with

from cairn import resend
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli import channel as cli_channel
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli_main
from worker_sdk import FailedPreconditionError, UnavailableError, _grpc, task

DOWN = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Connection refused"
HISTORY_DOWN = "history service at 127.0.0.1:7375 is unavailable: nothing listens on 127.0.0.1:7375"


def refusal(code: grpc.StatusCode, details: str = DOWN) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


UNAVAILABLE = refusal(grpc.StatusCode.UNAVAILABLE)


class Scripted:
    """One unary method answering its calls from a script: an exception in it is
    raised, anything else returned; the last item answers every later call."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.requests: list[Any] = []
        self.times: list[float] = []

    def _next(self, request: Any) -> Any:
        self.requests.append(request)
        self.times.append(time.monotonic())
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    async def __call__(self, request: Any, timeout: float | None = None) -> Any:
        return self._next(request)


class SyncScripted(Scripted):
    def __call__(self, request: Any, timeout: float | None = None) -> Any:  # type: ignore[override]
        return self._next(request)


def run(**fields: Any) -> cpb.Run:
    return cpb.Run(id="r1", task_id="t", **fields)


# ---- the rule ----------------------------------------------------------------------------


def test_which_requests_are_sent_again() -> None:
    again = resend.resendable
    assert again(rpb.GetRunRequest()) and again(rpb.WaitRunRequest()) and again(rpb.WatchRunRequest())
    assert again(rpb.CancelRunRequest()) and again(wspb.CompleteWaitTokenRequest())
    assert again(rpb.TriggerRunRequest(request_id="r")) and again(rpb.TriggerRunRequest(idempotency_key="k"))
    assert not again(rpb.TriggerRunRequest())
    batch = rpb.BatchTriggerRunsRequest(runs=[rpb.TriggerRunRequest(request_id="a"), rpb.TriggerRunRequest()])
    assert not again(batch) and not again(rpb.BatchTriggerRunsRequest())
    assert again(rpb.BatchTriggerRunsRequest(runs=[rpb.TriggerRunRequest(request_id="a")]))
    assert not again(wspb.SendEventRequest()) and not again(rpb.ReplayRunRequest())
    assert not again(wspb.CreateWaitTokenRequest()) and again(
        wspb.CreateWaitTokenRequest(idempotency_key="k")
    )
    assert not again(spb.CreateScheduleRequest()) and again(spb.DeleteScheduleRequest())
    assert again(wpb.RecordStepRequest()) and again(wpb.FinishAttemptRequest())
    assert resend.names_a_service(HISTORY_DOWN)
    assert resend.names_a_service("matching service at [::1]:7376 is unavailable: it cannot be reached")
    assert not resend.names_a_service(DOWN)


def test_the_frontends_message_is_the_one_recognised() -> None:
    """The frontend's own wording (services/frontend/backend.py) is what the
    clients recognise as "the frontend answered; this service is down"."""
    from services.frontend.backend import HISTORY, MATCHING, Backend

    backend = Backend.__new__(Backend)
    backend._addresses = {HISTORY: "127.0.0.1:7375", MATCHING: "10.0.0.2:7376,10.0.0.3:7376"}
    for name in (HISTORY, MATCHING):
        assert resend.names_a_service(str(backend._unavailable(name, "connection refused")))


# ---- the SDK -------------------------------------------------------------------------------


def test_a_read_is_sent_again_until_the_frontend_is_back() -> None:
    get = Scripted(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, rpb.GetRunResponse(run=run()))
    assert asyncio.run(_grpc.call_mapped(get, rpb.GetRunRequest(run_id="r1"), 10)).run.id == "r1"
    assert len(get.requests) == 4
    pauses = [b - a for a, b in zip(get.times, get.times[1:], strict=False)]
    assert pauses[0] >= resend.FIRST_DELAY / 2 and pauses[-1] >= pauses[0]  # growing, jittered


def test_a_trigger_is_sent_again_with_its_request_id() -> None:
    fake = FakeStub()
    fake.TriggerRun = Scripted(UNAVAILABLE, UNAVAILABLE, rpb.TriggerRunResponse(run=run()))  # type: ignore[method-assign]
    assert asyncio.run(client_with(fake).trigger("t", {"a": 1})).id == "r1"
    ids = {r.request_id for r in fake.TriggerRun.requests}  # type: ignore[attr-defined]
    assert len(fake.TriggerRun.requests) == 3 and len(ids) == 1 and ids != {""}  # type: ignore[attr-defined]


def test_what_is_not_safe_to_repeat_is_sent_once_and_names_the_frontend() -> None:
    for request in (rpb.TriggerRunRequest(task_id="t"), wspb.SendEventRequest(name="e")):
        method = Scripted(UNAVAILABLE)
        with pytest.raises(UnavailableError) as info:
            asyncio.run(_grpc.call_mapped(method, request, 10, frontend="127.0.0.1:1"))
        assert len(method.requests) == 1
        assert str(info.value) == f"cannot reach the Cairn frontend at 127.0.0.1:1: {DOWN}"


def sent_again_for(message: str) -> float:
    """The seconds an UNAVAILABLE's message says the call was sent again for."""
    found = re.search(r" \(sent again for (\d+\.\d) s\)$", message)
    assert found, message
    return float(found.group(1))


def test_the_time_is_bounded_by_the_calls_deadline_and_the_error_says_what_was_down() -> None:
    method = Scripted(UNAVAILABLE)
    started = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        asyncio.run(_grpc.call_mapped(method, rpb.GetRunRequest(), 1.0, frontend="127.0.0.1:1"))
    took = time.monotonic() - started
    # Ended by the call's 1 s deadline, not resend.RESEND_SECONDS (30 s): the bound
    # leaves a loaded machine 4 s of slack, and the message says the time it took.
    assert took < 1.0 + 4.0 and len(method.requests) >= 3
    message = str(info.value)
    assert message.startswith(f"cannot reach the Cairn frontend at 127.0.0.1:1: {DOWN} (sent again for ")
    assert 0 < sent_again_for(message) <= took + 0.05, (message, took)
    # a frontend that answered names the service behind it: its message is kept
    method = Scripted(refusal(grpc.StatusCode.UNAVAILABLE, HISTORY_DOWN))
    with pytest.raises(UnavailableError) as info:
        asyncio.run(_grpc.call_mapped(method, rpb.GetRunRequest(), 0.3, frontend="127.0.0.1:1"))
    assert str(info.value).startswith(HISTORY_DOWN + " (sent again for ")


def test_a_last_sending_cut_by_the_deadline_still_says_unavailable() -> None:
    method = Scripted(UNAVAILABLE, refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    with pytest.raises(UnavailableError, match="cannot reach the Cairn frontend"):
        asyncio.run(_grpc.call_mapped(method, rpb.GetRunRequest(), 5, frontend="127.0.0.1:1"))


def test_a_cancel_whose_first_sending_landed_answers_the_canceled_run() -> None:
    fake = FakeStub()
    precondition = refusal(grpc.StatusCode.FAILED_PRECONDITION, "run r1 already finished as canceled")
    fake.CancelRun = Scripted(UNAVAILABLE, precondition)  # type: ignore[attr-defined]
    fake.GetRun = Scripted(rpb.GetRunResponse(run=run(status=cpb.RUN_STATUS_CANCELED)))  # type: ignore[attr-defined]
    assert asyncio.run(client_with(fake).cancel("r1")).status == "canceled"
    # without a lost answer before it, the refusal stands
    fake.CancelRun = Scripted(precondition)  # type: ignore[attr-defined]
    with pytest.raises(FailedPreconditionError):
        asyncio.run(client_with(fake).cancel("r1"))
    # and a run that finished otherwise was not canceled by us
    fake.CancelRun = Scripted(UNAVAILABLE, precondition)  # type: ignore[attr-defined]
    fake.GetRun = Scripted(rpb.GetRunResponse(run=run(status=cpb.RUN_STATUS_COMPLETED)))  # type: ignore[attr-defined]
    with pytest.raises(FailedPreconditionError):
        asyncio.run(client_with(fake).cancel("r1"))


def test_a_completion_whose_first_sending_landed_answers_the_token() -> None:
    fake = FakeStub()
    client = client_with(fake)
    client._wait_stub = fake  # type: ignore[assignment]
    done = refusal(grpc.StatusCode.FAILED_PRECONDITION, "token tok_1 is already completed")
    fake.CompleteWaitToken = Scripted(UNAVAILABLE, done)  # type: ignore[attr-defined]
    sent = cpb.Payload(data=b'{"ok":true}', encoding="json/plain")
    token = wspb.WaitToken(id="tok_1", status=wspb.WAIT_TOKEN_STATUS_COMPLETED, payload=sent)
    fake.GetWaitToken = Scripted(wspb.GetWaitTokenResponse(token=token))  # type: ignore[attr-defined]
    assert asyncio.run(client.complete_token("tok_1", {"ok": True})).status == "completed"
    other = wspb.WaitToken(
        id="tok_1", status=wspb.WAIT_TOKEN_STATUS_COMPLETED, payload=cpb.Payload(data=b"1")
    )
    fake.CompleteWaitToken = Scripted(UNAVAILABLE, done)  # type: ignore[attr-defined]
    fake.GetWaitToken = Scripted(wspb.GetWaitTokenResponse(token=other))  # type: ignore[attr-defined]
    with pytest.raises(FailedPreconditionError):  # someone else's completion
        asyncio.run(client.complete_token("tok_1", {"ok": True}))


def test_a_finish_answered_ended_after_a_lost_answer_is_finished(caplog: pytest.LogCaptureFixture) -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        return 1

    stub = FakeStub()
    stub.refuse_writes[("run-1", None)] = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "attempt 1 has ended",
        "ended",
    )
    with caplog.at_level(logging.INFO, logger="cairn.worker"):
        finish, _ = execute(t, assignment(), stub)
    assert finish is not None and finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    assert "attempt finished: run=run-1 attempt=1" in caplog.text and "had landed" in caplog.text
    assert "superseded" not in caplog.text


# ---- the CLI -------------------------------------------------------------------------------


class SyncError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = DOWN) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def cli_with(monkeypatch: pytest.MonkeyPatch, **methods: SyncScripted) -> cli_frontend.Frontend:
    frontend = cli_frontend.Frontend(address="127.0.0.1:1", namespace="ns")

    class Stub:
        pass

    stub = Stub()
    for name, method in methods.items():
        setattr(stub, name, method)
    monkeypatch.setattr(frontend, "_runs", lambda: stub)
    return frontend


def test_the_cli_sends_a_read_and_a_trigger_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = SyncError(grpc.StatusCode.UNAVAILABLE)
    get = SyncScripted(gone, gone, rpb.GetRunResponse(run=run()))
    trigger = SyncScripted(gone, rpb.TriggerRunResponse(run=run()))
    frontend = cli_with(monkeypatch, GetRun=get, TriggerRun=trigger)
    assert frontend.get_run("r1")["id"] == "r1" and len(get.requests) == 3
    assert frontend.trigger("t", 1)["id"] == "r1"
    assert len(trigger.requests) == 2 and trigger.requests[0].request_id == trigger.requests[1].request_id


def test_the_cli_cancel_whose_first_sending_landed(monkeypatch: pytest.MonkeyPatch) -> None:
    cancel = SyncScripted(
        SyncError(grpc.StatusCode.UNAVAILABLE), SyncError(grpc.StatusCode.FAILED_PRECONDITION)
    )
    get = SyncScripted(rpb.GetRunResponse(run=run(status=cpb.RUN_STATUS_CANCELED)))
    assert cli_with(monkeypatch, CancelRun=cancel, GetRun=get).cancel_run("r1")["status"] == "canceled"


def test_the_cli_error_says_which_side_was_down() -> None:
    assert type(cli_channel.error(SyncError(grpc.StatusCode.UNAVAILABLE))) is cli_channel.Unreachable
    backend = cli_channel.error(SyncError(grpc.StatusCode.UNAVAILABLE, HISTORY_DOWN), 12.34)
    assert isinstance(backend, cli_channel.BackendDown) and isinstance(backend, cli_channel.Unreachable)
    assert str(backend) == HISTORY_DOWN + " (sent again for 12.3 s)"
    method = SyncScripted(SyncError(grpc.StatusCode.UNAVAILABLE))
    started = time.monotonic()
    with pytest.raises(cli_channel.Unreachable) as info:
        cli_channel.call(method, rpb.GetRunRequest(), 1.0)
    took = time.monotonic() - started
    # Ended by the call's deadline (see the SDK's test above for the bounds).
    assert took < 1.0 + 4.0 and len(method.requests) >= 3
    assert 0 < sent_again_for(str(info.value)) <= took + 0.05, (str(info.value), took)


def test_the_cli_names_the_service_a_frontend_said_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "cannot reach the Cairn frontend ...; is `cairn dev` running?": the
    frontend answered."""

    class Down:
        def __init__(self, **kwargs: Any) -> None:
            self.tls = self.api_key = None

        def __enter__(self) -> Down:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def get_run(self, run_id: str) -> Any:
            raise cli_channel.error(SyncError(grpc.StatusCode.UNAVAILABLE, HISTORY_DOWN), 30.0)

    monkeypatch.setattr(cli_frontend, "Frontend", Down)
    with pytest.raises(SystemExit) as info:
        cli_main.main(["runs", "get", "00000000-0000-0000-0000-000000000001"])
    message = str(info.value.code)
    assert message == f"error: {HISTORY_DOWN} (sent again for 30.0 s)"
    assert "cairn dev" not in message and "cannot reach the Cairn frontend" not in message


def test_a_call_a_stopping_frontend_cut_off_is_sent_again() -> None:
    """CANCELLED from the server (a frontend shutting down cut the call off) is
    treated as UNAVAILABLE: a read is sent again, and wait goes on."""
    cut = refusal(grpc.StatusCode.CANCELLED, "Cancelled on the server side")
    get = Scripted(cut, rpb.GetRunResponse(run=run()))
    assert asyncio.run(_grpc.call_mapped(get, rpb.GetRunRequest(run_id="r1"), 10)).run.id == "r1"
    assert len(get.requests) == 2
    fake = FakeStub()
    done = rpb.WaitRunResponse(run=run(status=cpb.RUN_STATUS_COMPLETED), done=True)
    fake.WaitRun = Scripted(cut, done)  # type: ignore[attr-defined]
    assert asyncio.run(client_with(fake).wait("r1", timeout=10)).status == "completed"
    assert (
        type(cli_channel.error(SyncError(grpc.StatusCode.CANCELLED, "Cancelled"))) is cli_channel.Unreachable
    )
    method = SyncScripted(SyncError(grpc.StatusCode.CANCELLED, "Cancelled"), rpb.GetRunResponse(run=run()))
    assert cli_channel.call(method, rpb.GetRunRequest(), 5).run.id == "r1"


def test_request_ids_are_time_ordered_uuids() -> None:
    """Version 7 (RFC 9562): ids made one after another sort by time, so they
    land at the end of history's index instead of on a random page of it."""
    first = resend.new_request_id()
    made = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= made:  # until the clock's millisecond moves on
        pass
    later = [resend.new_request_id() for _ in range(100)]
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in [first, *later])
    assert all(first < i for i in later) and len(set(later)) == 100
