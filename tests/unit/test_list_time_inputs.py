"""The creation-time inputs of ListRuns, without a server: the CLI's --since and
--until (cairn_cli.args.parse_time: RFC 3339 or a duration ago), the HTTP
layer's Timestamp fields (messages.fill and query_value: RFC 3339 only) and the
SDK's list filters (_requests.list_runs_request: aware datetimes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cairn.v1 import run_service_pb2 as rpb
from cairn_cli.args import build_parser, parse_time
from services.frontend.http import messages
from worker_sdk import _requests
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2025-01-02T15:04:05Z", datetime(2025, 1, 2, 15, 4, 5, tzinfo=UTC)),
        ("2025-01-02t15:04:05.5z", datetime(2025, 1, 2, 15, 4, 5, 500000, tzinfo=UTC)),
        ("2025-01-02T17:04:05+02:00", datetime(2025, 1, 2, 15, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_rfc3339_and_durations_ago(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("yesterday", "RFC 3339"),
        ("", "RFC 3339"),
        ("-5m", "RFC 3339"),
        ("2025-01-02", "offset"),
        ("2025-01-02T15:04:05", "offset"),
        ("1969-12-31T23:59:59Z", "1970"),
        ("100000d", "1970"),
        ("1e300", "1970"),
    ],
)
def test_parse_time_refuses_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_time(text, NOW)


def test_the_runs_list_flags_refuse_on_one_line_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["runs", "list", "--queue", "q.1", "--since", "2h", "--until", "2025-01-02T00:00:00Z"]
    )
    assert args.queue == "q.1" and args.since.tzinfo is not None
    assert args.until == datetime(2025, 1, 2, tzinfo=UTC)
    for flag, value in (("--since", "soon"), ("--until", "2025-01-02"), ("--queue", "bad name")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["runs", "list", flag, value])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert flag in line and repr(value) in line


def test_http_timestamps_are_rfc3339_with_an_offset() -> None:
    fields = rpb.ListRunsRequest.DESCRIPTOR.fields_by_name
    after = messages.query_value(fields["created_after"], ["2025-01-02T17:04:05 02:00"])  # '+' read as ' '
    request = messages.fill(
        rpb.ListRunsRequest(), {"created_after": after, "created_before": "2025-01-03t00:00:00z"}
    )
    assert request.created_after.ToDatetime(tzinfo=UTC) == datetime(2025, 1, 2, 15, 4, 5, tzinfo=UTC)
    assert request.created_before.ToDatetime(tzinfo=UTC) == datetime(2025, 1, 3, tzinfo=UTC)
    for bad in ("2025-01-02", "2025-01-02T15:04:05", "soon", "2025-02-30T00:00:00Z", 12, {"seconds": 1}):
        with pytest.raises(messages.BadRequest, match="created_after: must be an RFC 3339 time"):
            messages.fill(rpb.ListRunsRequest(), {"created_after": bad})


def test_sdk_list_filters_are_checked_before_sending() -> None:
    request = _requests.list_runs_request(
        "default",
        "",
        None,
        None,
        None,
        "q-1",
        datetime(2025, 1, 2, 17, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 1, 3, tzinfo=UTC),
    )
    assert request.queue == "q-1"
    assert request.created_after.ToDatetime(tzinfo=UTC) == datetime(2025, 1, 2, 15, tzinfo=UTC)
    assert request.HasField("created_before")
    unset = _requests.list_runs_request("default", "", None, None, None, None, None, None)
    assert not unset.HasField("created_after") and not unset.HasField("created_before") and unset.queue == ""
    with pytest.raises(InvalidArgumentError, match="queue"):
        _requests.list_runs_request("default", "", None, None, None, "bad name", None, None)
    with pytest.raises(InvalidArgumentError, match="timezone-aware"):
        _requests.list_runs_request("default", "", None, None, None, None, datetime(2025, 1, 2), None)
    with pytest.raises(ArgumentTypeError, match="created_before"):
        _requests.list_runs_request("default", "", None, None, None, None, None, "2025-01-02")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="created_before"):
        _requests.list_runs_request("default", "", None, None, None, None, NOW, NOW)
