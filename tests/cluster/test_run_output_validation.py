"""Bad run output and log reads through the public API, against a real cluster:
each refused AppendRunOutput or ListRunLogs gets INVALID_ARGUMENT (or the
attempt's FAILED_PRECONDITION, NOT_FOUND for an unknown run) with a message
naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from api_helpers import RPC_TIMEOUT, register
from harness import Cluster, expect_rpc_error, json_payload, run_stub, seconds, table_counts, worker_stub

from cairn.limits import MAX_LOG_MESSAGE_CHARS, MAX_OUTPUTS_PER_APPEND, MAX_STREAM_CHUNK_BYTES
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

OK_LINE = wpb.RunOutput(log=cpb.LogLine(level="INFO", message="fine", step_position=-1))


def chunk(stream: str = "tokens", data: bytes = b'"x"', encoding: str = "json/plain") -> wpb.RunOutput:
    return wpb.RunOutput(chunk=cpb.StreamChunk(stream=stream, data=cpb.Payload(data=data, encoding=encoding)))


def line(**fields: Any) -> wpb.RunOutput:
    values: dict[str, Any] = {"level": "INFO", "message": "m", "step_position": -1, **fields}
    return wpb.RunOutput(log=cpb.LogLine(**values))


def test_bad_output_and_log_reads_are_refused_and_write_nothing(cluster: Cluster) -> None:
    rstub, wstub = run_stub(cluster), worker_stub(cluster)
    register(wstub, "output-worker", "output-task")
    run = rstub.TriggerRun(
        rpb.TriggerRunRequest(task_id="output-task", payload=json_payload(None)), timeout=RPC_TIMEOUT
    ).run
    poll = wpb.PollAttemptRequest(worker_id="output-worker", task_ids=["output-task"], wait=seconds(10))
    (assignment,) = wstub.PollAttempt(poll, timeout=30).assignments
    before = table_counts(cluster)

    def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> None:
        details = expect_rpc_error(call, code, *words)
        assert "Traceback" not in details
        assert table_counts(cluster) == before, f"rows written by a refused request ({details})"

    def append(
        *outputs: wpb.RunOutput, attempt: int = 1, run_id: str = run.id, token: str = assignment.attempt_token
    ) -> Callable[[], Any]:
        request = wpb.AppendRunOutputRequest(
            run_id=run_id, attempt=attempt, outputs=outputs, attempt_token=token
        )
        return lambda: wstub.AppendRunOutput(request, timeout=RPC_TIMEOUT)

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    refused(append(), invalid, "outputs", "1 to")
    refused(append(*[OK_LINE] * (MAX_OUTPUTS_PER_APPEND + 1)), invalid, "outputs")
    refused(append(OK_LINE, wpb.RunOutput()), invalid, "outputs[1]", "log or chunk")
    refused(append(line(level="LOUD")), invalid, "outputs[0].log.level")
    refused(append(line(message="x" * (MAX_LOG_MESSAGE_CHARS + 1))), invalid, "outputs[0].log.message")
    refused(append(line(message="nul\x00")), invalid, "outputs[0].log.message", "NUL")
    refused(append(line(step_position=-2)), invalid, "outputs[0].log.step_position")
    refused(append(OK_LINE, chunk(stream="bad name")), invalid, "outputs[1].chunk.stream")
    refused(append(chunk(data=b"{")), invalid, "outputs[0].chunk.data")
    refused(append(chunk(data=b"")), invalid, "outputs[0].chunk.data")
    refused(
        append(chunk(data=b"1" * (MAX_STREAM_CHUNK_BYTES + 1))), invalid, "outputs[0].chunk.data", "bytes"
    )
    refused(append(chunk(encoding="text/csv")), invalid, "outputs[0].chunk.data.encoding")
    refused(append(OK_LINE, run_id="nope"), invalid, "run_id")
    refused(append(OK_LINE, attempt=0), invalid, "attempt")
    refused(append(OK_LINE, attempt=2), grpc.StatusCode.FAILED_PRECONDITION, "attempt 2")
    refused(append(OK_LINE, token=""), invalid, "attempt_token", "required")
    refused(append(OK_LINE, token="t" * 65), invalid, "attempt_token", "64")
    refused(append(OK_LINE, token="not-the-token"), grpc.StatusCode.PERMISSION_DENIED, "attempt_token")
    unknown = "00000000-0000-0000-0000-000000000000"
    refused(append(OK_LINE, run_id=unknown), grpc.StatusCode.NOT_FOUND, unknown)

    def logs(**fields: Any) -> Callable[[], Any]:
        request = rpb.ListRunLogsRequest(**{"run_id": run.id, **fields})
        return lambda: rstub.ListRunLogs(request, timeout=RPC_TIMEOUT)

    refused(logs(page_size=1001), invalid, "page_size")
    refused(logs(after_id=-1), invalid, "after_id")
    refused(logs(run_id="x"), invalid, "run_id")
    refused(logs(run_id=unknown), grpc.StatusCode.NOT_FOUND, unknown)

    # The same attempt's good output is taken: the refusals left nothing half-written.
    kept = wstub.AppendRunOutput(
        wpb.AppendRunOutputRequest(
            run_id=run.id,
            attempt=assignment.attempt,
            attempt_token=assignment.attempt_token,
            outputs=[OK_LINE, chunk()],
        ),
        timeout=RPC_TIMEOUT,
    )
    assert (kept.logs_dropped, kept.chunks_dropped) == (0, 0)
    assert [entry.message for entry in rstub.ListRunLogs(rpb.ListRunLogsRequest(run_id=run.id)).lines] == [
        "fine"
    ]
