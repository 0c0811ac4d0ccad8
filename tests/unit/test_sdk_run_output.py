"""What a running task logs (context.logger) and streams (context.stream), as
the SDK sends it (AppendRunOutput), against the in-memory stub: each line's
level, message, step and fields; lines go before the write that follows them;
nothing is sent while an attempt replays its journal; chunks are JSON or bytes
within their limits; a refusal saying the attempt is gone abandons it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from sdk_fakes import FakeStub

from cairn import payloads
from cairn.limits import MAX_LOG_FIELDS_BYTES, MAX_LOG_MESSAGE_CHARS, MAX_STREAM_CHUNK_BYTES
from cairn.v1 import common_pb2
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import InvalidArgumentError, context, step, task
from worker_sdk._batching import BatchingStub
from worker_sdk._execution import execute_attempt
from worker_sdk._output import fields_of, level_name, message_of


def assignment(steps: list[common_pb2.Step] = ()) -> wpb.AttemptAssignment:
    lease = Duration(seconds=30)
    return wpb.AttemptAssignment(
        run_id="run-1",
        attempt=1,
        task_id="t",
        payload=common_pb2.Payload(data=b"null", encoding="json/plain"),
        steps=steps,
        lease_duration=lease,
    )


def execute(t: Any, a: wpb.AttemptAssignment, stub: Any) -> wpb.FinishAttemptRequest | None:
    return asyncio.run(execute_attempt(stub, "default", t, a))


def appends(stub: FakeStub) -> list[wpb.AppendRunOutputRequest]:
    """Every AppendRunOutput sent, alone or in a BatchWrite, in order."""
    found: list[wpb.AppendRunOutputRequest] = []
    for call in stub.calls:
        if call.method == "AppendRunOutput":
            found.append(call.request)
        elif call.method == "BatchWrite":
            found += [w.append_run_output for w in call.request.writes if w.HasField("append_run_output")]
    return found


def outputs(stub: FakeStub) -> list[wpb.RunOutput]:
    return [o for r in appends(stub) for o in r.outputs]


def recorded(position: int, name: str, value: Any) -> common_pb2.Step:
    return common_pb2.Step(
        position=position,
        name=name,
        status=common_pb2.STEP_STATUS_COMPLETED,
        output=common_pb2.Payload(data=payloads.encode_json(value), encoding="json/plain"),
        attempt=1,
        tries=1,
    )


@step()
async def fetch(n: int) -> int:
    context.logger.warning("fetching %d", n, extra={"source": "api", "n": n})
    return n * 2


def test_lines_carry_level_message_step_and_fields_and_precede_the_step_record() -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        context.logger.info("start")
        value = await fetch(21)
        context.logger.debug("not stored: the logger is not enabled for DEBUG")
        return value

    stub = FakeStub()
    finish = execute(t, assignment(), BatchingStub(stub))  # as the Worker sends its writes
    assert finish is not None and finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    lines = [o.log for o in outputs(stub)]
    assert [(line.level, line.message) for line in lines] == [("INFO", "start"), ("WARNING", "fetching 21")]
    assert (lines[0].step_position, lines[0].step_name) == (-1, "")
    assert (lines[1].step_position, lines[1].step_name) == (0, "fetch")
    assert MessageToDict(lines[1].fields) == {"source": "api", "n": 21}
    assert lines[0].logger == "cairn.task.t" and lines[0].HasField("at")
    assert all(r.run_id == "run-1" and r.attempt == 1 for r in appends(stub))
    writes = [
        kind
        for call in stub.calls
        for kind in (
            [w.WhichOneof("write") for w in call.request.writes]
            if call.method == "BatchWrite"
            else [
                {"AppendRunOutput": "append_run_output", "RecordStep": "record_step"}.get(
                    call.method, "finish"
                )
            ]
        )
    ]
    assert writes == ["append_run_output", "record_step", "finish"]  # both lines in one call, first


def test_lines_and_the_step_they_precede_share_one_batch_in_order() -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        context.logger.info("start")
        return await fetch(1)

    fake = FakeStub()
    assert asyncio.run(execute_attempt(BatchingStub(fake), "default", t, assignment())) is not None
    first = fake.calls[0]
    assert first.method == "BatchWrite"  # queued in the same turn: one call, lines first
    assert [w.WhichOneof("write") for w in first.request.writes] == ["append_run_output", "record_step"]
    lines = first.request.writes[0].append_run_output.outputs
    assert [o.log.message for o in lines] == ["start", "fetching 1"]


def test_nothing_is_logged_or_streamed_while_the_attempt_replays() -> None:
    @task(id="t")
    async def t(payload: Any) -> int:
        context.logger.info("before the recorded step")
        await context.stream("tokens", "replayed")
        first = await fetch(1)  # recorded: replays
        context.logger.info("live again")
        await context.stream("tokens", "live")
        return first + await fetch(2)

    stub = FakeStub()
    execute(t, assignment([recorded(0, "fetch", 2)]), stub)
    sent = outputs(stub)
    assert [o.log.message for o in sent if o.HasField("log")] == ["live again", "fetching 2"]
    assert [json.loads(o.chunk.data.data) for o in sent if o.HasField("chunk")] == ["live"]


def test_chunks_are_json_or_bytes_within_their_limits() -> None:
    errors: list[str] = []

    @task(id="t")
    async def t(payload: Any) -> None:
        await context.stream("tokens", {"text": "hi"})
        await context.stream("audio.raw", b"\x00\x01")
        for name, chunk in [("bad name", "x"), ("big", "x" * MAX_STREAM_CHUNK_BYTES), ("set", {1, 2})]:
            try:
                await context.stream(name, chunk)
            except InvalidArgumentError as exc:
                errors.append(str(exc))

    stub = FakeStub()
    execute(t, assignment(), stub)
    chunks = [o.chunk for o in outputs(stub)]
    assert [(c.stream, c.data.encoding) for c in chunks] == [
        ("tokens", "json/plain"),
        ("audio.raw", "binary/plain"),
    ]
    assert json.loads(chunks[0].data.data) == {"text": "hi"} and chunks[1].data.data == b"\x00\x01"
    assert len(errors) == 3
    assert "'bad name'" in errors[0] and "exceeds the limit" in errors[1] and "'set'" in errors[2]


def test_a_stream_refused_as_gone_abandons_the_attempt() -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        await context.stream("tokens", "x")
        return "never"

    stub = FakeStub(refuse={"AppendRunOutput": grpc.StatusCode.FAILED_PRECONDITION})
    stub.refuse_gone = "canceled"
    assert execute(t, assignment(), stub) is None
    assert "FinishAttempt" not in stub.methods()


def test_a_lost_line_does_not_fail_the_task(caplog: pytest.LogCaptureFixture) -> None:
    @task(id="t")
    async def t(payload: Any) -> str:
        context.logger.info("lost")
        await asyncio.sleep(0.01)
        return "done"

    stub = FakeStub(refuse={"AppendRunOutput": grpc.StatusCode.UNAVAILABLE})
    with caplog.at_level(logging.WARNING, logger="cairn.worker"):
        finish = execute(t, assignment(), stub)
    assert finish is not None and finish.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED
    assert any("output not stored" in r.getMessage() for r in caplog.records)


def test_levels_messages_and_fields_as_stored() -> None:
    assert [level_name(n) for n in (5, 10, 15, 20, 25, 30, 40, 50, 60)] == [
        "DEBUG",
        "DEBUG",
        "DEBUG",
        "INFO",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
        "CRITICAL",
    ]
    assert message_of("a %s %d", ("b", 3), None) == "a b 3"
    assert message_of("no %s here %s", ("x",), None).startswith("no %s here %s")  # a bad format is kept
    long = message_of("x" * (MAX_LOG_MESSAGE_CHARS + 10), (), None)
    assert len(long) == MAX_LOG_MESSAGE_CHARS and long.endswith("[truncated]")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        assert "ValueError: boom" in message_of("failed", (), exc)
    assert MessageToDict(fields_of({"run_id": "r", "when": object.__name__, "n": 1})) == {
        "when": "object",
        "n": 1,
    }
    assert MessageToDict(fields_of({"big": "x" * MAX_LOG_FIELDS_BYTES})) == {"truncated": True}
