"""Run output through HistoryService (issue 12): log lines and stream chunks of
the current attempt become 'log' and 'stream' events of the run's log, in the
order sent and among its step records; ListRunLogs reads the lines back;
GetRun leaves them out; a run keeps at most its bounds (the rest is dropped
and counted); a gone attempt or a bad chunk writes nothing."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct
from harness import json_payload

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.limits import MAX_LOG_LINES_PER_RUN, MAX_OUTPUTS_PER_APPEND
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

TASK = "output-task"


def log(message: str, level: str = "INFO", position: int = -1, **fields: Any) -> wpb.RunOutput:
    extra = Struct()
    extra.update(fields)
    line = cpb.LogLine(
        level=level,
        message=message,
        logger="cairn.run",
        step_position=position,
        step_name="fetch" if position >= 0 else "",
        fields=extra,
    )
    return wpb.RunOutput(log=line)


def chunk(value: Any, stream: str = "tokens") -> wpb.RunOutput:
    return wpb.RunOutput(chunk=cpb.StreamChunk(stream=stream, data=json_payload(value)))


def append(services: Any, run_id: str, *outputs: wpb.RunOutput, attempt: int = 1) -> Any:
    request = wpb.AppendRunOutputRequest(
        namespace=services.namespace,
        run_id=run_id,
        attempt=attempt,
        outputs=outputs,
        attempt_token=services.token(run_id, attempt),
    )
    return services.history.AppendRunOutput(request, timeout=5)


async def all_events(services: Any, run_id: str) -> list[cpb.RunEvent]:
    request = hpb.ListRunEventsRequest(namespace=services.namespace, run_id=run_id, after_id=0, limit=1000)
    response = await services.history.ListRunEvents(request, timeout=5)
    return [u.event for u in response.updates]


async def test_lines_and_chunks_join_the_run_log_in_order(services):
    await services.register(TASK)
    a = await services.start(TASK, {"n": 1})
    await append(services, a.run_id, log("starting", user="ada"), chunk("Hel"))
    await services.record_step(a.run_id, 1, 0, "fetch", 42)
    await append(services, a.run_id, log("inside", "WARNING", position=1), chunk({"t": "lo"}))
    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_COMPLETED, "done")

    events = await all_events(services, a.run_id)
    kinds = [e.type for e in events]
    assert kinds[kinds.index("attempt_started") :] == [
        "attempt_started",
        "log",
        "stream",
        "step_recorded",
        "log",
        "stream",
        "completed",
    ]
    first_log = json.loads(events[kinds.index("log")].details_json)
    assert first_log == {
        "level": "INFO",
        "message": "starting",
        "logger": "cairn.run",
        "step_position": None,
        "step_name": None,
        "fields": {"user": "ada"},
    }
    chunks = [json.loads(e.details_json) for e in events if e.type == "stream"]
    assert chunks == [{"stream": "tokens", "value": "Hel"}, {"stream": "tokens", "value": {"t": "lo"}}]

    run = await services.get(a.run_id)
    assert "log" not in [e.type for e in run.events] and "stream" not in [e.type for e in run.events]

    page = await services.history.ListRunLogs(
        rpb.ListRunLogsRequest(namespace=services.namespace, run_id=a.run_id, page_size=1), timeout=5
    )
    assert [line.message for line in page.lines] == ["starting"] and page.more
    rest = await services.history.ListRunLogs(
        rpb.ListRunLogsRequest(namespace=services.namespace, run_id=a.run_id, after_id=page.last_id),
        timeout=5,
    )
    (line,) = rest.lines
    assert (line.message, line.level, line.step_position, line.step_name, line.attempt) == (
        "inside",
        "WARNING",
        1,
        "fetch",
        1,
    )
    assert not rest.more and rest.last_id == line.id


async def test_a_run_keeps_at_most_its_bound_of_lines(services):
    await services.register(TASK)
    a = await services.start(TASK)
    dropped = 0
    for batch in range(MAX_LOG_LINES_PER_RUN // MAX_OUTPUTS_PER_APPEND + 1):
        lines = [log(f"line {batch}.{i}") for i in range(MAX_OUTPUTS_PER_APPEND)]
        dropped += (await append(services, a.run_id, *lines)).logs_dropped
    assert dropped == MAX_OUTPUTS_PER_APPEND
    stored, after, more = 0, 0, True
    while more:
        request = rpb.ListRunLogsRequest(
            namespace=services.namespace, run_id=a.run_id, after_id=after, page_size=1000
        )
        page = await services.history.ListRunLogs(request, timeout=5)
        stored, after, more = stored + len(page.lines), page.last_id, page.more
    assert stored == MAX_LOG_LINES_PER_RUN
    # chunks have their own bound: a chunk still goes in
    assert (await append(services, a.run_id, chunk("more"))).chunks_dropped == 0


async def test_output_of_a_gone_attempt_or_a_bad_chunk_writes_nothing(services):
    await services.register(TASK)
    a = await services.start(TASK)
    before = await services.counts()

    stale = await services.refused(append(services, a.run_id, log("late"), attempt=2))
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION

    binary = cpb.Payload(data=b"{", encoding="json/plain")
    bad = wpb.RunOutput(chunk=cpb.StreamChunk(stream="tokens", data=binary))
    refused = await services.refused(append(services, a.run_id, log("ok"), bad))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outputs[1].chunk.data" in refused.details()

    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_COMPLETED, None)
    ended = await services.refused(append(services, a.run_id, log("after the end")))
    assert ended.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = await services.counts()
    assert after["run_events"] == before["run_events"] + 1  # the completion only


async def test_batch_write_appends_output_with_the_attempts_steps(services):
    await services.register(TASK)
    a = await services.start(TASK)
    output = wpb.AppendRunOutputRequest(
        run_id=a.run_id, attempt=1, outputs=[log("in the batch")], attempt_token=a.attempt_token
    )
    step = wpb.RecordStepRequest(
        run_id=a.run_id,
        attempt=1,
        attempt_token=a.attempt_token,
        position=0,
        name="s",
        status=cpb.STEP_STATUS_COMPLETED,
        output=json_payload(1),
        tries=1,
    )
    request = wpb.BatchWriteRequest(
        namespace=services.namespace,
        writes=[wpb.AttemptWrite(append_run_output=output), wpb.AttemptWrite(record_step=step)],
    )
    for w in request.writes:
        getattr(w, w.WhichOneof("write")).namespace = services.namespace
    response = await services.history.BatchWrite(request, timeout=5)
    assert [r.WhichOneof("result") for r in response.results] == ["append_run_output", "record_step"]
    kinds = [e.type for e in await all_events(services, a.run_id)]
    assert kinds[-2:] == ["log", "step_recorded"]
