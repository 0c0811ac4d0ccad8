"""What a new user meets in the first hour (issue 12), without a cluster:
`cairn --version`; `cairn trigger --timeout` as a duration and `--payload @file`
or `-` (stdin); the list form of a run's JSON (no attempts or steps it did not
load) and event details as JSON objects; the times, durations and whole errors
of `cairn runs get`; a step whose output is over the size limit failing at once,
non-retryably, naming the step and the size (the SDK); the worker's default
slots and its help; and why an address is unreachable (the CLI's line for each
cause: test_cli_unreachable.py).
tests/cluster/test_cli_first_hour.py runs the same commands against a cluster."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import socket
from importlib import metadata, util
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from sdk_fakes import FakeStub

from cairn import addresses, error_types, payloads
from cairn.limits import MAX_PAYLOAD_BYTES
from cairn.run_json import run_summary_to_dict, run_to_dict
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli import frontend
from cairn_cli.args import DEFAULT_SLOTS, build_parser
from cairn_cli.main import main
from cairn_cli.output import show_run, show_runs, span
from worker_sdk import Retry, Worker, step, task
from worker_sdk._execution import execute_attempt
from worker_sdk._worker import DEFAULT_SLOTS as SDK_DEFAULT_SLOTS


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ---- cairn --version --------------------------------------------------------------------


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"cairn {metadata.version('cairn')}"


# ---- cairn trigger: --timeout, --payload @file and - ------------------------------------


@pytest.mark.parametrize("text, seconds", [("30s", 30.0), ("2m", 120.0), ("3", 3.0), ("1.5", 1.5)])
def test_trigger_timeout_is_a_duration_like_delay(text: str, seconds: float) -> None:
    args = parse("trigger", "t", "--wait", "--timeout", text, "--delay", text)
    assert args.timeout == seconds == args.delay


def test_a_bad_timeout_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--timeout" in refused(capsys, "trigger", "t", "--timeout", "soon")


def test_payload_from_a_file_and_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = {"blob": "x" * (3 * 1024 * 1024)}  # far over the 128 KiB a command-line argument may be
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(big))
    assert parse("trigger", "t", "--payload", f"@{path}").payload == big
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    assert parse("trigger", "t", "--payload", "-").payload == {"from": "stdin"}
    assert parse("trigger", "t").payload is None
    assert parse("trigger", "t", "--payload", '{"a": 1}').payload == {"a": 1}
    assert parse("events", "send", "e", "--payload", f"@{path}").payload == big


def test_payload_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    err = refused(capsys, "trigger", "t", "--payload", f"@{missing}")
    assert "--payload" in err and "nope.json" in err and "no such file" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    err = refused(capsys, "trigger", "t", "--payload", f"@{bad}")
    assert "not valid JSON (in" in err and "bad.json" in err
    assert "directory" in refused(capsys, "trigger", "t", "--payload", f"@{tmp_path}")
    assert "file name" in refused(capsys, "trigger", "t", "--payload", "@")


def test_a_payload_over_the_limit_is_refused_before_sending() -> None:
    with pytest.raises(
        ValueError, match=rf"payload for task 't': \d+ bytes as JSON exceeds the limit of {MAX_PAYLOAD_BYTES}"
    ):
        frontend._payload("payload for task 't'", "x" * (10 * 1024 * 1024))
    assert frontend._payload("p", "x" * 1000).data.startswith(b'"x')


# ---- runs list --json and runs get ------------------------------------------------------


def ts(seconds: float) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromNanoseconds(1_700_000_000 * 10**9 + round(seconds * 1e9))
    return t


def full_run() -> cpb.Run:
    long_message = "the payment gateway answered 503 " + " ".join(f"word{i}" for i in range(40)) + " END"
    return cpb.Run(
        id="run-1",
        task_id="t",
        status=cpb.RUN_STATUS_FAILED,
        attempt_count=2,
        created_at=ts(0),
        started_at=ts(0.25),
        finished_at=ts(12.75),
        error=cpb.ErrorInfo(
            type="GatewayError", message=long_message, stack_trace="Traceback: line 1\n  boom"
        ),
        attempts=[
            cpb.Attempt(
                number=1,
                status=cpb.ATTEMPT_STATUS_CRASHED,
                started_at=ts(0.25),
                finished_at=ts(10.25),
                error=cpb.ErrorInfo(type="cairn.LeaseExpired", message="the worker stopped heartbeating"),
                retry_delay=Duration(seconds=1),
            ),
            cpb.Attempt(
                number=2,
                status=cpb.ATTEMPT_STATUS_FAILED,
                started_at=ts(11.25),
                finished_at=ts(12.75),
                error=cpb.ErrorInfo(type="GatewayError", message=long_message),
            ),
        ],
        steps=[
            cpb.Step(
                position=0,
                name="fetch",
                status=cpb.STEP_STATUS_COMPLETED,
                attempt=1,
                tries=1,
                output=cpb.Payload(data=b'{"id":1}', encoding="json/plain"),
                recorded_at=ts(1.75),
            ),
            cpb.Step(
                position=1,
                name="charge",
                status=cpb.STEP_STATUS_FAILED,
                attempt=2,
                tries=2,
                error=cpb.ErrorInfo(type="GatewayError", message=long_message, stack_trace="step trace"),
                try_errors=[cpb.ErrorInfo(type="TimeoutError", message="first try timed out")],
                recorded_at=ts(12.5),
            ),
        ],
        events=[cpb.RunEvent(id=1, type="created", details_json='{"queue": "default"}', at=ts(0))],
    )


def test_a_list_leaves_out_what_it_did_not_load(capsys: pytest.CaptureFixture[str]) -> None:
    listed = cpb.Run(id="r", task_id="t", status=cpb.RUN_STATUS_COMPLETED, created_at=ts(0))
    summary = run_summary_to_dict(listed)
    assert not {"attempts", "steps", "events"} & set(summary)
    whole = run_to_dict(listed)
    assert set(whole) == set(summary) | {"attempts", "steps", "events"}
    assert {k: whole[k] for k in summary} == summary  # type: ignore[literal-required]
    show_runs([summary], as_json=True)
    printed = json.loads(capsys.readouterr().out)
    assert "attempts" not in printed and "steps" not in printed and printed["status"] == "completed"


def test_event_details_are_json_objects() -> None:
    run = run_to_dict(full_run())
    assert run["events"][0]["details"] == {"queue": "default"}
    raw = cpb.Run(
        events=[cpb.RunEvent(id=2, type="x", details_json="not json"), cpb.RunEvent(id=3, type="y")]
    )
    assert [e["details"] for e in run_to_dict(raw)["events"]] == ["not json", {}]


def test_runs_get_shows_times_durations_and_whole_errors(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_to_dict(full_run())
    show_run(run, as_json=False, full=True)
    out = capsys.readouterr().out
    assert "created  2023-11-14T22:13:20.000Z" in out
    assert "started  2023-11-14T22:13:20.250Z   (250ms after created)" in out
    assert "finished 2023-11-14T22:13:32.750Z   (took 12.50s)" in out
    assert "10.00s" in out and "1.50s" in out  # the attempts' durations
    assert "1.50s" in out and "1.25s" in out  # fetch: 0.25 -> 1.75; charge: 11.25 -> 12.5
    flat = " ".join(out.split())
    message = run["error"]["message"]  # type: ignore[index]
    assert flat.count(message) == 3  # the run's, attempt 2's and the step's, whole
    assert "step 1 charge, try 1: TimeoutError: first try timed out" in flat
    assert "attempt 1: cairn.LeaseExpired: the worker stopped heartbeating" in flat
    assert "step trace" not in out and "cairn runs get run-1 --full" in out
    assert max(len(line) for line in out.splitlines() if "word" in line) <= 160
    show_run(run, as_json=False, full=True, traces=True)
    out = capsys.readouterr().out
    assert "step trace" in out and "Traceback: line 1" not in out  # the run's own error has no table
    show_run(run, as_json=True, full=True)
    assert json.loads(capsys.readouterr().out)["events"][0]["details"] == {"queue": "default"}


def test_runs_get_full_flag() -> None:
    assert parse("runs", "get", "r", "--full").full
    assert not parse("runs", "get", "r").full


def test_span() -> None:
    assert [span(x) for x in (0.0004, 0.25, 2.456, 65, 7300)] == ["0ms", "250ms", "2.46s", "1m05s", "2h1m"]


# ---- a step's output over the size limit -------------------------------------------------


def test_a_step_output_over_the_limit_fails_the_step_at_once() -> None:
    calls = 0

    @step(name="make-report", retry=Retry(max_attempts=3, min_timeout=0.01))
    async def make_report() -> str:
        nonlocal calls
        calls += 1
        return "x" * (MAX_PAYLOAD_BYTES + 1)

    @task(id="t", retry=Retry(max_attempts=3))
    async def t(payload: Any) -> str:
        return await make_report()

    lease = Duration(seconds=30)
    assignment = wpb.AttemptAssignment(
        run_id="run-1",
        attempt=1,
        task_id="t",
        payload=cpb.Payload(data=payloads.encode_json(None), encoding="json/plain"),
        lease_duration=lease,
    )
    stub = FakeStub()
    finish = asyncio.run(execute_attempt(stub, "default", t, assignment))
    assert calls == 1  # not retried in place: it can never be recorded
    assert stub.methods() == ["RecordStep", "FinishAttempt"]
    record = stub.calls[0].request
    assert record.status == cpb.STEP_STATUS_FAILED and not record.HasField("output")
    assert record.error.type == error_types.OUTPUT_REFUSED and record.error.non_retryable
    assert "step 'make-report'" in record.error.message
    assert f"{MAX_PAYLOAD_BYTES + 3} bytes" in record.error.message  # the JSON string's quotes
    assert str(MAX_PAYLOAD_BYTES) in record.error.message
    assert finish is not None and finish.outcome == wpb.ATTEMPT_OUTCOME_FAILED
    assert finish.error.non_retryable  # the run fails now, not after three attempts
    assert finish.error.type == error_types.OUTPUT_REFUSED


# ---- cairn worker: default slots and help ------------------------------------------------


def test_worker_default_slots_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_SLOTS == SDK_DEFAULT_SLOTS == 100
    assert inspect.signature(Worker).parameters["slots"].default == 100
    assert parse("worker", "examples.orders").slots == 100
    assert parse("worker", "examples.orders", "--slots", "8").slots == 8
    assert "--slots" in refused(capsys, "worker", "m", "--slots", "0")
    with pytest.raises(SystemExit):
        parse("worker", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "A slot is one attempt of a run in progress" in text and "(default 100)" in text
    assert "examples.hello" not in text and "examples.orders" in text
    assert util.find_spec("examples.orders") is not None


# ---- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, message",
    [
        (
            "http://127.0.0.1:7373",
            "is a URL: Cairn speaks gRPC, not HTTP; write host:port without http://, e.g. 127.0.0.1:7373",
        ),
        ("https://cairn.example:443/", "not HTTPS; write host:port without https://, e.g. cairn.example:443"),
        ("127.0.0.1:99999", "the port must be a number from 1 to 65535, not '99999'"),
        ("127.0.0.1:abc", "the port must be a number from 1 to 65535, not 'abc'"),
        ("127.0.0.1", "has no port: write host:port, e.g. 127.0.0.1:7373"),
        ("::1", "has no port: write host:port, e.g. [::1]:7373"),
        ("127.0.0.1:", "the port is missing"),
        (":7373", "the host is missing"),
    ],
)
def test_each_bad_address_gets_its_own_message(address: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        addresses.check_address(address)
    assert message in str(exc.value)
    assert " in '" not in str(exc.value)  # a single address is not called a list


def test_good_addresses_still_pass() -> None:
    for address in (
        "127.0.0.1:7373",
        "cairn:7373",
        "[::1]:7373",
        "dns:///cairn.internal:7373",
        "unix:///tmp/cairn.sock",
        "a:1,b",
        "passthrough:///x:1",
    ):
        assert addresses.check_address(address) == address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_why_an_address_is_unreachable() -> None:
    port = free_port()
    assert addresses.unreachable_reason(f"127.0.0.1:{port}") == (
        f"nothing listens on 127.0.0.1:{port} (connection refused)"
    )
    assert addresses.unreachable_reason("no-such-host.invalid:7373") == (
        "the host 'no-such-host.invalid' is unknown (its name does not resolve)"
    )
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert addresses.unreachable_reason(f"127.0.0.1:{listening.getsockname()[1]}") == ""
    assert addresses.unreachable_reason("dns:///x:1") == ""


@pytest.mark.parametrize("argv", [["worker", "tasks", "--queue"], ["runs", "list", "--queue"]])
def test_a_queue_name_is_checked_before_anything_starts(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from cairn_cli.args import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, "bad name!"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --queue: invalid name 'bad name!'" in err and "Traceback" not in err
