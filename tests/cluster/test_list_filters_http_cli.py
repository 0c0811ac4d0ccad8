"""ListRuns' queue and creation-time filters end to end, on a real cluster:
GET /v1/runs?queue=&created_after=&created_before= (RFC 3339 in the query
string, the OpenAPI document's date-time parameters), `cairn runs list --queue
--since --until` (an RFC 3339 time or a duration ago), the Python client's
list(queue=, created_after=, created_before=) and the gRPC API; and their
refusals: a bad queue name, created_before not after created_after, a malformed
time, each a clear error (HTTP 400 naming the parameter, gRPC INVALID_ARGUMENT,
one line naming the CLI flag with exit status 2), with nothing written.

No worker runs: the tasks are registered with their queues, so every run stays
queued. Six runs get creation times in March 2020 (set by the test), two keep
their own (now), so `--since 10m` and `--until 10m` split them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from harness import Cluster, auth, cairn_cli, expect_rpc_error, json_payload, run_stub, worker_stub
from harness.database import table_counts

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.embedded import free_port
from worker_sdk import Client
from worker_sdk.errors import InvalidArgumentError

T0 = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
TASK_QUEUES = {"lf-mail": "mail", "lf-report": "reports"}


@pytest.fixture
def http_cluster(cluster_factory: Any) -> Iterator[tuple[Cluster, httpx.Client]]:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    with httpx.Client(headers=auth.headers(), base_url=f"http://{address}", timeout=30) as client:
        yield cluster, client


def make_runs(cluster: Cluster) -> dict[str, list[str]]:
    """Eight queued runs, alternately on mail and reports: six created a minute
    apart from T0, two now. Their ids, newest first, as {"mail": [...], ...}."""
    worker_stub(cluster).RegisterWorker(
        wpb.RegisterWorkerRequest(
            worker_id="lf-registrar",
            version="v1",
            slots=1,
            tasks=[wpb.TaskDefinition(task_id=t, queue=q) for t, q in TASK_QUEUES.items()],
        ),
        timeout=10,
    )
    runs = run_stub(cluster)
    ids = [
        runs.TriggerRun(
            rpb.TriggerRunRequest(task_id=list(TASK_QUEUES)[i % 2], payload=json_payload(i)), timeout=10
        ).run.id
        for i in range(8)
    ]
    for i, run_id in enumerate(ids[:6]):
        cluster.sql("UPDATE runs SET created_at = $2 WHERE id = $1::uuid", run_id, T0 + timedelta(minutes=i))
    by_queue: dict[str, list[str]] = {"mail": [], "reports": []}
    for i, run_id in reversed(list(enumerate(ids))):
        by_queue[list(TASK_QUEUES.values())[i % 2]].append(run_id)
    return by_queue


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert body["code"] == "INVALID_ARGUMENT", body
    for word in words:
        assert word in body["message"], body
    assert "Traceback" not in response.text


def listed(http: httpx.Client, query: str) -> list[str]:
    """The ids of every page of GET /v1/runs?<query>, two runs a page."""
    ids: list[str] = []
    token = ""
    while True:
        page = ok(http.get(f"/v1/runs?page_size=2&{query}" + (f"&page_token={token}" if token else "")))
        ids.extend(r["id"] for r in page["runs"])
        token = page["next_page_token"]
        if not token:
            return ids


def test_http_lists_by_queue_and_creation_time(http_cluster: tuple[Cluster, httpx.Client]) -> None:
    cluster, http = http_cluster
    mail = make_runs(cluster)["mail"]  # now, T0+4m, T0+2m, T0
    assert listed(http, "queue=mail") == mail
    # created_after inclusive, created_before exclusive
    window = "created_after=2020-03-01T12:02:00Z&created_before=2020-03-01T12:04:00Z"
    assert listed(http, f"queue=mail&{window}") == [mail[2]]
    assert listed(http, "created_after=2020-03-01T12:04:00Z&created_before=2020-03-01T12:05:00Z") == [mail[1]]
    # an offset, percent-encoded or with its '+' left unescaped (read back as a space); a lowercase z
    assert listed(http, "queue=mail&created_after=2020-03-01T14:02:00%2B02:00") == mail[:3]
    assert listed(http, "queue=mail&created_after=2020-03-01T14:02:00+02:00") == mail[:3]
    assert listed(http, "queue=mail&created_before=2020-03-01t12:02:00z") == mail[3:]
    assert listed(http, "queue=nobody") == []

    before = table_counts(cluster)
    refused(http.get("/v1/runs?queue=bad%20name"), "queue")
    refused(
        http.get("/v1/runs?created_after=2020-03-01T12:00:00Z&created_before=2020-03-01T12:00:00Z"),
        "created_before",
    )
    refused(
        http.get("/v1/runs?created_after=2020-03-01T13:00:00Z&created_before=2020-03-01T12:00:00Z"),
        "created_before",
    )
    for bad in ("yesterday", "2025-03-01", "2020-03-01T12:00:00", "2025-13-01T00:00:00Z", "12"):
        refused(http.get("/v1/runs", params={"created_after": bad}), "created_after", "RFC 3339")
    refused(http.get("/v1/runs?created_before=1969-12-31T23:59:59Z"), "created_before")
    refused(http.get("/v1/runs?created_after=a&created_after=b"), "created_after")
    assert table_counts(cluster) == before

    params = {p["name"]: p for p in ok(http.get("/openapi.json"))["paths"]["/v1/runs"]["get"]["parameters"]}
    for name in ("created_after", "created_before"):
        assert params[name]["in"] == "query"
        assert params[name]["schema"]["type"] == "string"
        assert params[name]["schema"]["format"] == "date-time"
    assert params["queue"]["schema"] == {"type": "string"}


def test_grpc_and_the_python_client_filter_and_refuse(cluster: Cluster) -> None:
    by_queue = make_runs(cluster)
    reports = by_queue["reports"]  # now, T0+5m, T0+3m, T0+1m
    stub = run_stub(cluster)

    def stamp(when: datetime) -> Timestamp:
        ts = Timestamp()
        ts.FromDatetime(when)
        return ts

    page = stub.ListRuns(
        rpb.ListRunsRequest(queue="reports", created_after=stamp(T0 + timedelta(minutes=3))), timeout=10
    )
    assert [r.id for r in page.runs] == reports[:3]
    assert all(r.queue == "reports" and r.status == cpb.RUN_STATUS_QUEUED for r in page.runs)

    before = table_counts(cluster)
    t = 10
    expect_rpc_error(
        lambda: stub.ListRuns(rpb.ListRunsRequest(queue="bad name"), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "queue",
    )
    expect_rpc_error(
        lambda: stub.ListRuns(
            rpb.ListRunsRequest(created_after=stamp(T0), created_before=stamp(T0)), timeout=t
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "created_before",
    )
    expect_rpc_error(
        lambda: stub.ListRuns(rpb.ListRunsRequest(created_after=Timestamp(seconds=-1)), timeout=t),
        grpc.StatusCode.INVALID_ARGUMENT,
        "created_after",
    )
    assert table_counts(cluster) == before

    with Client(address=cluster.address) as client:
        got = client.list(
            queue="reports", created_after=T0 + timedelta(minutes=1), created_before=T0 + timedelta(minutes=5)
        )
        assert [r.id for r in got] == reports[2:]
        got = client.list(queue="mail", created_before=T0 + timedelta(minutes=3), limit=1)
        assert [r.id for r in got] == [by_queue["mail"][2]]
        assert len(client.list(created_after=datetime.now(UTC) - timedelta(minutes=10))) == 2
        with pytest.raises(InvalidArgumentError, match="queue"):
            client.list(queue="bad name")
        with pytest.raises(InvalidArgumentError, match="timezone-aware"):
            client.list(created_after=datetime(2025, 3, 1))
        with pytest.raises(InvalidArgumentError, match="created_before"):
            client.list(created_after=T0, created_before=T0)


def cli_ids(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["id"] for line in proc.stdout.splitlines()]


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_runs_list_by_queue_since_and_until(cluster: Cluster) -> None:
    by_queue = make_runs(cluster)
    mail, reports = by_queue["mail"], by_queue["reports"]
    ls = ("runs", "list", "--json")
    assert cli_ids(cairn_cli(cluster, *ls, "--queue", "mail")) == mail
    assert cli_ids(cairn_cli(cluster, *ls, "--queue", "reports", "--since", "10m")) == reports[:1]
    assert cli_ids(cairn_cli(cluster, *ls, "--queue", "reports", "--until", "10m")) == reports[1:]
    assert cli_ids(cairn_cli(cluster, *ls, "--since", "30d", "--queue", "mail")) == mail[:1]
    window = ("--since", "2020-03-01T12:01:00Z", "--until", "2020-03-01T14:05:00+02:00")
    assert cli_ids(cairn_cli(cluster, *ls, *window)) == [mail[1], reports[2], mail[2], reports[3]]
    assert cli_ids(cairn_cli(cluster, *ls, *window, "--queue", "reports", "--limit", "1")) == [reports[2]]
    table = cairn_cli(cluster, "runs", "list", "--queue", "mail", "--until", "2020-03-01T12:00:01Z")
    assert table.returncode == 0 and mail[3] in table.stdout and mail[2] not in table.stdout

    before = table_counts(cluster)
    one_line_error(cairn_cli(cluster, *ls, "--since", "yesterday"), "--since", "RFC 3339")
    one_line_error(cairn_cli(cluster, *ls, "--until", "2020-03-01T12:00:00"), "--until", "offset")
    one_line_error(cairn_cli(cluster, *ls, "--since", "1h", "--until", "2h"), "--until", "--since")
    one_line_error(cairn_cli(cluster, *ls, "--queue", "bad name"), "--queue")
    assert table_counts(cluster) == before
