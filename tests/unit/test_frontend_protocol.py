"""The frontend's side of the worker protocol (issue 11), without a cluster:
the validators refuse each bad step record, wait and payload with
INVALID_ARGUMENT naming the field (D1, D5, D9), and the frontend passes a
backend's trailing metadata ("cairn-attempt-gone", D8) on to the client
unchanged, for a routed call and for an explicit handler, while a refused
request never reaches the backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.limits import MAX_TRY_ERRORS
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from services.common import errors
from services.common.errors import ATTEMPT_GONE_KEY, ServiceError, attempt_gone_of, rpc
from services.frontend import interceptors
from services.frontend import validation as check
from services.frontend.backend import Backend
from services.frontend.handlers import Handlers
from services.frontend.routes import ROUTES
from services.frontend.run_watch import RunWatcher
from services.frontend.serving import add_services

RUN = "6f1c1c1e-2a6b-4d0e-9a53-0d6b5c1f0a11"
TOKEN = "r3x6vT0cQm1kZ9PzH2wYbN4uLs8aEfGj"  # an AttemptAssignment.attempt_token


def ok_json(value: bytes = b"1") -> cpb.Payload:
    return cpb.Payload(data=value, encoding="json/plain")


def step(**fields: Any) -> wpb.RecordStepRequest:
    base: dict[str, Any] = dict(
        run_id=RUN,
        attempt=1,
        attempt_token=TOKEN,
        position=0,
        name="s",
        status=cpb.STEP_STATUS_COMPLETED,
        output=ok_json(),
        tries=1,
    )
    base.update(fields)
    return wpb.RecordStepRequest(**base)


def refused(check_it: Callable[[], None], field: str) -> str:
    with pytest.raises(ServiceError) as info:
        check_it()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message.startswith(f"{field}:") or f"{field}:" in info.value.message, info.value.message
    return info.value.message


# ---- D1, D5: step records --------------------------------------------------------------


def test_a_good_step_record_passes() -> None:
    check.record_step(step())
    check.record_step(step(output=cpb.Payload(data=b"null")))
    check.record_step(step(output=cpb.Payload(data=b"", encoding="binary/plain")))
    err = cpb.ErrorInfo(type="ValueError", message="no")
    check.record_step(step(tries=3, try_errors=[err, err]))
    check.record_step(step(status=cpb.STEP_STATUS_FAILED, output=None, error=err, tries=2, try_errors=[err]))


def test_tries_zero_is_refused_not_stored_as_one() -> None:
    assert "got 0" in refused(lambda: check.record_step(step(tries=0)), "tries")
    refused(lambda: check.record_step(step(tries=-2)), "tries")


@pytest.mark.parametrize(
    "output",
    [
        None,  # no output at all
        cpb.Payload(),  # empty json/plain: JSON text is required (null is `null`)
        cpb.Payload(data=b"", encoding="json/plain"),
        cpb.Payload(data=b"{oops", encoding="json/plain"),
        cpb.Payload(data=b"NaN", encoding="json/plain"),
        cpb.Payload(data=b"\xff", encoding="json/plain"),
    ],
)
def test_a_completed_step_needs_a_valid_result(output: cpb.Payload | None) -> None:
    refused(lambda: check.record_step(step(output=output)), "output")


@pytest.mark.parametrize(
    ("encoding", "fragment"),
    [("application/msgpack", "not an accepted encoding"), ("proto/cairn.v1.ChildResults", "history only")],
)
def test_a_step_output_in_a_refused_encoding_names_the_encoding(encoding: str, fragment: str) -> None:
    message = refused(
        lambda: check.record_step(step(output=cpb.Payload(data=b"x", encoding=encoding))), "output.encoding"
    )
    assert fragment in message and "'json/plain'" in message and "'binary/plain'" in message


def test_a_failed_step_needs_its_error() -> None:
    refused(lambda: check.record_step(step(status=cpb.STEP_STATUS_FAILED, output=None)), "error")
    refused(
        lambda: check.record_step(
            step(status=cpb.STEP_STATUS_FAILED, output=None, error=cpb.ErrorInfo(message="m"))
        ),
        "error.type",
    )


def test_try_errors_are_bounded_and_checked_like_error() -> None:
    err = cpb.ErrorInfo(type="E")
    many = MAX_TRY_ERRORS + 1
    assert str(MAX_TRY_ERRORS) in refused(
        lambda: check.record_step(step(tries=many + 1, try_errors=[err] * many)), "try_errors"
    )
    check.record_step(step(tries=many + 5, try_errors=[err] * MAX_TRY_ERRORS))  # the latest ones
    refused(lambda: check.record_step(step(tries=2, try_errors=[err, err])), "try_errors")
    refused(lambda: check.record_step(step(tries=3, try_errors=[err, cpb.ErrorInfo()])), "try_errors[1].type")
    refused(
        lambda: check.record_step(step(tries=2, try_errors=[cpb.ErrorInfo(type="E", message="\x00")])),
        "try_errors[0].message",
    )


def test_a_negative_position_is_refused() -> None:
    refused(lambda: check.record_step(step(position=-1)), "position")


def test_batch_write_refuses_a_bad_record_step_naming_the_write() -> None:
    batch = wpb.BatchWriteRequest(
        namespace="default",
        writes=[
            wpb.AttemptWrite(record_step=step()),
            wpb.AttemptWrite(record_step=step(position=1, tries=0)),
        ],
    )
    refused(lambda: check.batch_write(batch), "writes[1].record_step.tries")


def test_every_write_of_an_attempt_needs_its_token() -> None:
    ref: dict[str, Any] = dict(run_id=RUN, attempt=1)
    line = wpb.RunOutput(log=cpb.LogLine(level="INFO", message="m", step_position=-1))
    writes: list[tuple[Callable[[Any], None], Any]] = [
        (check.attempt_ref, wpb.HeartbeatRequest(**ref)),  # Heartbeat's check
        (check.record_step, step()),
        (check.finish, wpb.FinishAttemptRequest(**ref, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED)),
        (check.update_metadata, wpb.UpdateRunMetadataRequest(**ref)),
        (check.append_run_output, wpb.AppendRunOutputRequest(**ref, outputs=[line])),
    ]
    for check_it, request in writes:
        request.attempt_token = TOKEN
        check_it(request)
        for bad, why in (("", "required"), ("x" * 65, "longer than 64"), ("a\x00b", "NUL")):
            request.attempt_token = bad
            message = refused(lambda: check_it(request), "attempt_token")  # noqa: B023
            assert why in message, message
            assert len(message) < 200, message  # the value is not echoed
    finish = wpb.FinishAttemptRequest(**ref, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED)  # no token
    batch = wpb.BatchWriteRequest(
        namespace="default",
        writes=[wpb.AttemptWrite(record_step=step()), wpb.AttemptWrite(finish_attempt=finish)],
    )
    refused(lambda: check.batch_write(batch), "writes[1].finish_attempt.attempt_token")


# ---- D2: sleeps ------------------------------------------------------------------------


def suspend(w: wpb.WaitSpec) -> wpb.FinishAttemptRequest:
    return wpb.FinishAttemptRequest(
        run_id=RUN, attempt=1, attempt_token=TOKEN, outcome=wpb.ATTEMPT_OUTCOME_SUSPENDED, wait=w
    )


def test_a_sleep_needs_its_until() -> None:
    refused(
        lambda: check.finish(suspend(wpb.WaitSpec(position=0, name="sleep", sleep=wpb.SleepWait()))),
        "wait.sleep.until",
    )
    w = wpb.WaitSpec(position=0, name="sleep", sleep=wpb.SleepWait())
    w.sleep.until.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    check.finish(suspend(w))


def test_a_suspension_needs_a_wait() -> None:
    refused(
        lambda: check.finish(
            wpb.FinishAttemptRequest(
                run_id=RUN, attempt=1, attempt_token=TOKEN, outcome=wpb.ATTEMPT_OUTCOME_SUSPENDED
            )
        ),
        "wait",
    )
    refused(lambda: check.finish(suspend(wpb.WaitSpec(position=0, name="w"))), "wait")


def test_a_failed_attempt_needs_its_error() -> None:
    req = wpb.FinishAttemptRequest(
        run_id=RUN, attempt=1, attempt_token=TOKEN, outcome=wpb.ATTEMPT_OUTCOME_FAILED
    )
    refused(lambda: check.finish(req), "error")


def test_a_completed_attempt_may_return_null_as_empty_data() -> None:
    check.finish(
        wpb.FinishAttemptRequest(
            run_id=RUN, attempt=1, attempt_token=TOKEN, outcome=wpb.ATTEMPT_OUTCOME_COMPLETED
        )
    )


# ---- D8: trailing metadata passes through the frontend ------------------------------------


def test_attempt_gone_metadata_round_trip() -> None:
    for gone, name in [
        (wpb.ATTEMPT_GONE_CANCELED, "canceled"),
        (wpb.ATTEMPT_GONE_TIMED_OUT, "timed_out"),
        (wpb.ATTEMPT_GONE_SUPERSEDED, "superseded"),
        (wpb.ATTEMPT_GONE_ENDED, "ended"),
    ]:
        exc = errors.attempt_gone("attempt 1 of run x is gone", gone)
        assert exc.code == grpc.StatusCode.FAILED_PRECONDITION
        assert exc.trailing_metadata == ((ATTEMPT_GONE_KEY, name),)
        assert attempt_gone_of(exc.trailing_metadata) == gone
        assert attempt_gone_of(((ATTEMPT_GONE_KEY, name.encode()),)) == gone
    assert attempt_gone_of(()) == wpb.ATTEMPT_GONE_UNSPECIFIED
    assert attempt_gone_of(((ATTEMPT_GONE_KEY, "unheard-of"),)) == wpb.ATTEMPT_GONE_UNSPECIFIED
    # every AttemptGone value but UNSPECIFIED has a case above
    assert len(wpb.AttemptGone.values()) == 5


class FakeHistory(hgrpc.HistoryServiceServicer):
    """Refuses every write as history does an attempt that is gone, and counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @rpc
    async def RecordStep(self, request: Any, context: Any) -> Any:
        self.calls.append("RecordStep")
        raise errors.attempt_gone(
            "run x: attempt 1 is not current (the run was canceled)", wpb.ATTEMPT_GONE_CANCELED
        )

    @rpc
    async def Heartbeat(self, request: Any, context: Any) -> Any:
        self.calls.append("Heartbeat")
        raise errors.attempt_gone("run x: attempt 1 was superseded", wpb.ATTEMPT_GONE_SUPERSEDED)

    @rpc
    async def BatchWrite(self, request: Any, context: Any) -> Any:
        self.calls.append("BatchWrite")
        # as history answers a whole batch it cannot take, with the reason
        raise errors.attempt_gone("run x: the run timed out", wpb.ATTEMPT_GONE_TIMED_OUT)


def run_async(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), 20)

    asyncio.run(bounded())


def test_the_frontend_passes_a_backends_trailing_metadata_unchanged() -> None:
    async def body() -> None:
        history = FakeHistory()
        backend_server = grpc.aio.server()
        hgrpc.add_HistoryServiceServicer_to_server(history, backend_server)  # type: ignore[no-untyped-call]
        history_port = backend_server.add_insecure_port("127.0.0.1:0")
        await backend_server.start()
        history_channel = grpc.aio.insecure_channel(f"127.0.0.1:{history_port}")
        matching_channel = grpc.aio.insecure_channel("127.0.0.1:1")
        backend = Backend(history_channel, f"127.0.0.1:{history_port}", matching_channel, "127.0.0.1:1")
        frontend = grpc.aio.server(interceptors=interceptors.chain(ROUTES, None))
        add_services(frontend, ROUTES, Handlers(backend, RunWatcher(), 1.0).by_path(), backend)
        port = frontend.add_insecure_port("127.0.0.1:0")
        await frontend.start()
        client = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = wgrpc.WorkerServiceStub(client)  # type: ignore[no-untyped-call]
        try:
            calls = [
                (stub.RecordStep(step()), "canceled"),  # a routed call
                (
                    stub.Heartbeat(wpb.HeartbeatRequest(run_id=RUN, attempt=1, attempt_token=TOKEN)),
                    "superseded",
                ),
                (  # an explicit handler
                    stub.BatchWrite(wpb.BatchWriteRequest(writes=[wpb.AttemptWrite(record_step=step())])),
                    "timed_out",
                ),
            ]
            for call, reason in calls:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "attempt" in (info.value.details() or "") or "timed out" in (
                    info.value.details() or ""
                )
                assert (ATTEMPT_GONE_KEY, reason) in tuple(info.value.trailing_metadata() or ())
            assert sorted(history.calls) == ["BatchWrite", "Heartbeat", "RecordStep"]

            # A refused request never reaches history, and carries no attempt-gone.
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.RecordStep(step(tries=0))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (info.value.details() or "").startswith("tries:")
            assert ATTEMPT_GONE_KEY not in dict(tuple(info.value.trailing_metadata() or ()))
            assert sorted(history.calls) == ["BatchWrite", "Heartbeat", "RecordStep"]
        finally:
            await client.close()
            await history_channel.close()
            await matching_channel.close()
            await frontend.stop(None)
            await backend_server.stop(None)

    run_async(body)
